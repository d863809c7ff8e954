"""A long conversation sent turn by turn through the chat core as the client's History (one walk from
the newest message back) sends the upstream exactly what clean_history on the whole history, then
trimming that list, sends."""

from __future__ import annotations

from fake_upstream import FakeUpstream

from chatbot.core.events import ErrorEvent, HistoryTrimmed
from chatbot.core.history import History, clean_history, trim_history
from chatbot.core.reply import drain
from chatbot.core.tokens import counter_for
from chatbot.core.upstream import Upstream


async def test_300_turns_as_a_history_send_what_the_plain_functions_send(fake: FakeUpstream, settings_for) -> None:
    # A small context budget, so older turns are trimmed, and small history caps, so the oldest message
    # kept is cut to the characters left: the walk's hardest cases, on every turn.
    # One core's budget trims older turns; the other's sends all the caps keep, so the oldest message,
    # cut to the characters left by max_history_chars, reaches the upstream. Turns alternate between them.
    def make_core(tokens: str) -> Upstream:
        settings = settings_for(CHATBOT_CONTEXT_TOKENS=tokens, CHATBOT_SYSTEM_PROMPT="Be brief.")
        return Upstream(settings.model_copy(update={"max_history_messages": 150, "max_history_chars": 9_000}))

    cores = [make_core("1500"), make_core("100000")]
    settings = cores[0].settings
    caps = (settings.max_history_messages, settings.max_history_chars, settings.max_message_chars)
    history: list[dict] = []  # as the browser holds it
    trimmed_turns = cut_sent = 0
    for turn in range(300):
        message = f"Question {turn}: " + "tell me more " * (turn % 7) + ("<|endoftext|>\x00" if turn % 50 == 0 else "")
        core = cores[turn % 2]
        reply, new_events = await drain(core.stream(message, History.of(history, settings), "fast"))
        new_body = fake.last.body["messages"]
        plain = clean_history(history, *caps)
        budget = core.budget(core.resolve("fast"))[0]
        want = trim_history([new_body[0], *plain, new_body[-1]], budget, counter_for(core.resolve("fast").id).count)
        assert new_body == want.messages, turn
        trimmed = [e.dropped_turns for e in new_events if isinstance(e, HistoryTrimmed)]
        # the turns the caps left out count as left out too: never fewer than trim_history's, none when it has none
        assert len(trimmed) == bool(want.dropped_turns) and all(n >= want.dropped_turns for n in trimmed)
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
    assert trimmed_turns > 100  # the small budget was binding
    assert cut_sent > 100  # and with the large one, a message cut by the caps was sent
