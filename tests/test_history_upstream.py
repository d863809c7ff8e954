"""A long conversation sent turn by turn through the chat core with a HistoryWindow sends the upstream
exactly what the old path (clean_history on the whole history, then prepare with the list) sends."""

from __future__ import annotations

from fake_upstream import FakeUpstream

from chatbot.history import HistoryWindow, clean_history
from chatbot.upstream import ErrorEvent, HistoryTrimmed, Upstream, drain


async def test_300_turns_with_a_window_send_what_the_old_path_sends(fake: FakeUpstream, settings_for) -> None:
    # A small context budget, so older turns are trimmed, and small history caps, so the oldest message
    # kept is cut to the characters left: the window's hardest cases, on every turn.
    # One core's budget trims older turns; the other's sends all the caps keep, so the oldest message,
    # cut to the characters left by max_history_chars, reaches the upstream. Turns alternate between them.
    def make_core(tokens: str) -> Upstream:
        settings = settings_for(CHATBOT_CONTEXT_TOKENS=tokens, CHATBOT_SYSTEM_PROMPT="Be brief.")
        return Upstream(settings.model_copy(update={"max_history_messages": 150, "max_history_chars": 9_000}))

    cores = [make_core("1500"), make_core("100000")]
    settings = cores[0].settings
    caps = (settings.max_history_messages, settings.max_history_chars, settings.max_message_chars)
    window = HistoryWindow.for_settings(settings)
    history: list[dict] = []  # as the browser holds it
    trimmed_turns = cut_sent = 0
    for turn in range(300):
        message = f"Question {turn}: " + "tell me more " * (turn % 7) + ("<|endoftext|>\x00" if turn % 50 == 0 else "")
        snapshot = window.sync(history)
        core = cores[turn % 2]
        reply, new_events = await drain(core.stream(message, snapshot, "fast"))
        new_body = fake.last.body["messages"]
        old_reply, old_events = await drain(core.stream(message, clean_history(history, *caps), "fast"))
        assert fake.last.body["messages"] == new_body, turn
        assert [e for e in new_events if isinstance(e, HistoryTrimmed)] == \
            [e for e in old_events if isinstance(e, HistoryTrimmed)]
        assert not [e for e in new_events if isinstance(e, ErrorEvent)]
        trimmed_turns += any(isinstance(e, HistoryTrimmed) for e in new_events)
        whole = clean_history(history, caps[0], 10**9, caps[2])
        cut_sent += len(new_body) > 2 and new_body[1] not in whole  # the oldest message sent was cut
        history.append({"role": "user", "metadata": None, "content": [{"type": "text", "text": message}],
                        "options": None})
        if turn % 9 == 4:  # a failed reply: only a note stays, so two user messages come in a row
            history.append({"role": "assistant", "metadata": {"title": "⚠️ Error"}, "content": "cut"})
            continue
        history.append({"role": "assistant", "metadata": {"title": "Thinking"}, "content": f"thought {turn}"})
        history.append({"role": "assistant", "metadata": None, "content": [{"type": "text", "text": reply}],
                        "options": None})
    # the empty first history, then the first one with messages (cleaned within the caps); then appends
    assert window.rebuilds == 2
    assert trimmed_turns > 100  # the small budget was binding
    assert cut_sent > 100  # and with the large one, a message cut by the caps was sent
