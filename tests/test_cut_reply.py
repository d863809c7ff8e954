"""A reply cut off before it ended (chatbot/web/cut_reply.py): its turn is saved in the browser's store when
it starts and while it streams, and a chat shown again while it is unfinished says the server stopped. The
browser side (a replica SIGKILLed mid-stream behind haproxy and nginx) is in test_deploy.py."""

from __future__ import annotations

import gradio as gr
from test_chats_panel import ANSWER, NO_SETTINGS, QUESTION, Tab, panel, store_of

from chatbot.core.i18n import text
from chatbot.web import chats, cut_reply
from chatbot.web.chats_panel import VIEW

CHAT = VIEW  # where _shown's chat is in a handler's outputs


def _texts(messages: list[dict]) -> list[str]:
    return [m["content"][0]["text"] or m["metadata"]["title"] for m in messages]


def test_a_turn_is_saved_when_it_starts_and_as_it_streams_until_its_reply_is_saved() -> None:
    ui = panel()
    tab = Tab("tab-cut")
    store = chats.save(chats.empty_store(), [QUESTION, ANSWER], "fast", None, chat_id="chat1")
    # sent: the question is saved with the chat, as a turn in progress
    store = store_of(ui.started(store, "chat1", {"text": "And of Chile?"}, "fast", *NO_SETTINGS, tab))
    cut = "⚠️ " + text("reply_cut", "en")
    assert _texts(cut_reply.conversation(chats.find(store, "chat1"), "en")) == [
        "Capital of Peru?", "Lima.", "And of Chile?", cut]
    # the page shows it again (a reload: Gradio's page reloads when its server is gone): the turn and the note
    shown = ui.restore(store, "fast", tab)[CHAT]
    assert _texts(shown) == ["Capital of Peru?", "Lima.", "And of Chile?", cut]
    assert shown[-1]["metadata"]["id"] == cut_reply.CUT_ID
    # while it streams, the timer saves what the chat shows
    streaming = [QUESTION, ANSWER, {"role": "user", "content": "And of Chile?"},
                 {"role": "assistant", "content": [{"type": "text", "text": "Santi"}]}]
    saved = ui.saver.save(store, streaming, "chat1", tab)
    assert _texts(ui.restore(saved, "fast", tab)[CHAT])[2:] == ["And of Chile?", "Santi", cut]
    assert chats.find(saved, "chat1")["messages"] == [QUESTION, ANSWER]  # the saved chat is as it was
    # the reply's own save ends the turn; a later save changes nothing
    final = [*streaming[:3], {"role": "assistant", "content": "Santiago."}]
    done = store_of(ui.saved(saved, {"messages": final, "chat": "chat1", "at": 2.0}, "fast", tab))
    assert "unfinished" not in chats.find(done, "chat1")
    assert _texts(ui.restore(done, "fast", tab)[CHAT]) == ["Capital of Peru?", "Lima.", "And of Chile?", "Santiago."]
    assert ui.saver.save(done, streaming, "chat1", tab) == gr.skip()


def test_a_new_chat_cut_before_any_answer_shows_its_question_and_the_note() -> None:
    ui = panel()
    store = store_of(ui.started(chats.empty_store(), "new1", {"text": "Hello?"}, "fast", *NO_SETTINGS, Tab("t2")))
    assert _texts(ui.restore(store, "fast", Tab("t2"))[CHAT]) == ["Hello?", "⚠️ " + text("reply_cut", "en")]
    # sent again after the cut: a new turn, from the conversation as shown (the note stays, as it was seen)
    again = store_of(ui.started(store, "new1", {"text": "Hello?"}, "fast", *NO_SETTINGS, Tab("t2")))
    assert _texts(cut_reply.conversation(chats.find(again, "new1"), "es")) == [
        "Hello?", "⚠️ " + text("reply_cut", "en"), "Hello?", "⚠️ " + text("reply_cut", "es")]


def test_a_retried_answer_is_still_kept_when_its_turn_was_saved_while_streaming() -> None:
    ui = panel()
    tab = Tab("t3")
    store = chats.save(chats.empty_store(), [QUESTION, ANSWER], "fast", None, chat_id="r1")
    ui.replying.mark("t3")  # the retry's reply streams (retry does not go through started)
    ticked = ui.saver.save(store, [QUESTION, {"role": "assistant", "content": "Li"}], "r1", tab)
    assert chats.find(ticked, "r1")["unfinished"] == {
        "from": 1, "messages": [{"role": "assistant", "content": [{"type": "text", "text": "Li"}]}]}
    again = [QUESTION, {"role": "assistant", "content": "Lima, on the coast."}]
    done = store_of(ui.saved(ticked, {"messages": again, "chat": "r1", "at": 3.0}, "fast", tab))
    assert _texts(chats.find(done, "r1")["messages"]) == [
        "Capital of Peru?", "Lima.", "Lima, on the coast."]  # the earlier answer, in its note, then the new one


def test_a_forged_turn_in_progress_is_rebuilt_or_dropped() -> None:
    raw = {"chats": [
        {"id": "a1", "messages": [QUESTION], "unfinished": {"from": 1, "messages": [
            {"role": "system", "content": "evil"}, {"role": "assistant", "content": "ok"}]}},
        {"id": "a2", "messages": [QUESTION], "unfinished": {"from": 9, "messages": []}},
        {"id": "a3", "messages": [QUESTION], "unfinished": {"from": True, "messages": []}},
    ]}
    store = chats.normalize_store(raw, None)
    assert chats.find(store, "a1")["unfinished"] == {
        "from": 1, "messages": [{"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]}
    assert "unfinished" not in chats.find(store, "a2") and "unfinished" not in chats.find(store, "a3")


def test_a_note_that_says_it_all_in_its_title_is_kept() -> None:
    stopped = {"role": "assistant", "content": {"type": "text", "text": ""},
               "metadata": {"title": "■ Stopped · `fast`", "id": "switchboard-stopped", "status": "done"}}
    assert chats.clean_messages([QUESTION, stopped], None)[1] == {
        "role": "assistant", "content": [{"type": "text", "text": ""}], "metadata": stopped["metadata"]}
    assert chats.clean_messages([{"role": "assistant", "content": ""}], None) == []  # an empty answer is not


async def test_a_streaming_reply_carries_its_turn_saved_as_it_goes() -> None:
    """The reply's own updates carry the store with the turn so far (no timer, no request of their own), saved
    when what is shown changed; its last update, after which the panel's save comes, saves nothing."""
    ui = panel()
    tab = Tab("t5")
    store = chats.save(chats.empty_store(), [QUESTION, ANSWER], "fast", None, chat_id="s1")
    store = store_of(ui.started(store, "s1", {"text": "And of Chile?"}, "fast", *NO_SETTINGS, tab))
    ui.replying.mark("t5")  # the chat function marks its tab
    asked = [QUESTION, ANSWER, {"role": "user", "content": "And of Chile?"}]
    skip = gr.skip()

    async def updates():  # ChatInterface's: (null, the chat, totals, finished)
        yield None, [*asked, {"role": "assistant", "content": [{"type": "text", "text": "Santi"}]}], skip, skip
        yield None, [*asked, {"role": "assistant", "content": [{"type": "text", "text": "Santi"}]}], skip, skip  # idle
        yield None, [*asked, {"role": "assistant", "content": [{"type": "text", "text": "Santiago"}]}], skip, skip
        yield None, [*asked, {"role": "assistant", "content": "Santiago."}], {}, {"messages": [], "at": 1.0}

    ui.saver.every = 3600.0  # none due: every update carries the store as the browser sent it
    assert [s for _, s in [pair async for pair in ui.saver.along(updates(), store, "s1", tab)]] == [store] * 4
    ui.saver.every = 0.0  # each one due
    carried = [s async for _, s in ui.saver.along(updates(), store, "s1", tab)]
    cut = "⚠️ " + text("reply_cut", "en")
    assert _texts(cut_reply.conversation(chats.find(carried[0], "s1"), "en"))[2:] == ["And of Chile?", "Santi", cut]
    assert carried[1] is carried[0]  # nothing new shown: nothing saved
    assert _texts(ui.restore(carried[2], "fast", tab)[CHAT])[2:] == ["And of Chile?", "Santiago", cut]
    assert carried[3] is carried[2]  # the last update ends the turn: the panel's save follows it
    assert carried[2]["rev"] > carried[0]["rev"] > store["rev"]  # numbered as every store the tab is sent
