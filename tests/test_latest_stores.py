"""The store each tab was last sent (chatbot/web/latest_stores.py), and the race it closes: a chat clicked right
after a reply ends, before that reply's save has reached the browser (tests/test_browser_chat_list.py's
reopened chat once came back without its system prompt under load)."""

from __future__ import annotations

import threading

from test_chats_panel import ANSWER, QUESTION, Tab, panel

from chatbot.web import chats
from chatbot.web.chats_panel import SHOWN, VIEW
from chatbot.web.latest_stores import LatestStores

SYSTEM = VIEW + SHOWN - 3  # the chat's system prompt among a handler's outputs


def test_an_older_copy_is_replaced_by_the_one_the_tab_was_sent() -> None:
    latest = LatestStores()
    first = latest.sent("tab", {**chats.empty_store(), "rev": 7})
    second = latest.sent("tab", chats.save(first, [QUESTION, ANSWER], "fast", None))  # save() drops "rev"
    assert (first["rev"], second["rev"]) == (8, 9)
    stale = chats.normalize_store(first, None)  # what the browser sends before the second copy arrives
    assert latest.fresh("tab", stale) == second and latest.fresh("other", stale) == stale
    assert latest.fresh("tab", chats.normalize_store(second, None)) == second
    assert latest.sent(None, stale) == stale  # no tab: nothing kept


def test_a_chat_opened_while_the_reply_before_is_being_saved_opens_with_its_settings() -> None:
    """The visitor opens a chat the moment a reply ends, before that reply's save came back to the browser:
    the change waits for the save (it is not refused as if the reply still streamed) and works on the saved
    store, so the opened chat's settings come back and the reply just saved is not lost."""
    ui = panel()
    tab = Tab("tab-race")
    first = chats.save(chats.empty_store(), [QUESTION, ANSWER], "fast", None, chat_id="first1",
                       settings={"system": "Answer briefly."})
    first = {**first, "current": None}
    started = ui.started(first, "other1", {"text": "Other chat"}, "fast", "", None, None, tab)[0]  # the tab waits
    reply = {"messages": [{"role": "user", "content": "Other chat"}, {"role": "assistant", "content": "Sure."}],
             "chat": "other1", "at": 1.0}
    late = threading.Timer(0.5, ui.saved, (started, reply, "fast", tab))  # the save, still on its way
    late.start()
    opened = ui.open(started, "first1", "other1", "fast", tab)  # the click carries the store before the save
    late.join()
    store = opened[0]
    assert store["current"] == "first1" and opened[SYSTEM] == "Answer briefly."
    assert [m["content"][0]["text"] for m in chats.find(store, "other1")["messages"]] == ["Other chat", "Sure."]
