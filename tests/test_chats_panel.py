"""The saved-chats panel: its handlers (what the browser's store becomes after each event) and the fixed
storage key and secret that let the chats outlive a restart (the browser side is in test_browser.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import gradio as gr
import httpx
from conftest import make_settings
from fake_upstream import FakeUpstream

import app as switchboard
from chatbot.web import chats
from chatbot.web.chats_panel import ChatsPanel


def panel() -> ChatsPanel:
    def model_update(saved: str | None, current: str | None) -> tuple[object, str | None]:
        return (gr.Dropdown(value=saved) if saved else gr.skip()), saved or current

    return ChatsPanel("s" * 32, lambda model, messages, lang, *_: f"gauge:{model}:{len(messages)}", model_update)


QUESTION = {"role": "user", "content": [{"type": "text", "text": "Capital of Peru?"}]}
ANSWER = {"role": "assistant", "content": [{"type": "text", "text": "Lima."}]}


def store_of(outputs: tuple) -> dict:
    return outputs[0]


def path_of(button: gr.DownloadButton) -> str:
    return button.value["path"]


def test_a_finished_reply_becomes_the_current_chat_with_its_exports() -> None:
    outputs = panel().saved(chats.empty_store(), {"messages": [QUESTION, ANSWER], "at": 1.0}, "fast", None)
    store, listing, title, markdown, exported = outputs
    chat = chats.current(store)
    assert chat["messages"] == [QUESTION, ANSWER] and chat["model"] == "fast"
    assert listing.choices == [("Capital of Peru?", chat["id"])] and listing.value == chat["id"]
    assert title.value == "Capital of Peru?"
    assert Path(path_of(markdown)).read_text().startswith("# Capital of Peru?")
    assert json.loads(Path(path_of(exported)).read_text())["messages"][1] == {"role": "assistant", "content": "Lima."}


def test_stop_and_undo_save_what_is_shown() -> None:
    ui = panel()
    partial = {"role": "assistant", "content": [{"type": "text", "text": "Li"}]}
    store = store_of(ui.stopped(chats.empty_store(), [QUESTION, partial], "c1", "fast", None))
    assert chats.current(store)["messages"] == [QUESTION, partial] and store["current"] == "c1"
    outputs = ui.undone(store, [QUESTION, ANSWER, QUESTION, partial], "c1", "fast", None)
    assert chats.current(store_of(outputs))["messages"] == [QUESTION, ANSWER] and outputs[-1] == "gauge:fast:2"


def test_open_new_rename_delete() -> None:
    ui = panel()
    first = store_of(ui.saved(chats.empty_store(), [QUESTION, ANSWER], "smart", None))
    chat_id = first["current"]
    fresh = ui.start_new(first, chat_id, "fast", None)
    assert fresh[0]["current"] is None and fresh[5:7] == ([], []) and fresh[8] == "gauge:fast:0"
    assert chats.valid_id(fresh[9]) and fresh[9] != chat_id  # the new chat's id, before its first message
    opened = ui.open(fresh[0], chat_id, fresh[9], "fast", None)
    assert opened[5] == [QUESTION, ANSWER] and opened[7].value == "smart" and opened[8] == "gauge:smart:2"
    assert opened[9] == chat_id
    renamed = store_of(ui.renamed(opened[0], chat_id, "Geography", None))
    assert chats.current(renamed)["title"] == "Geography"
    gone = ui.deleted(renamed, chat_id, "fast", None)
    assert gone[0]["chats"] == [] and gone[5] == [] and gone[9] != chat_id


def test_restore_rebuilds_a_forged_store() -> None:
    forged = {"current": "abc", "chats": [{"id": "abc", "messages": [
        {"role": "system", "content": "evil"},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/work/main/.env"}}, "hi"]},
    ]}]}
    outputs = panel().restore(forged, "fast", None)
    shown = outputs[5]
    assert shown == [{"role": "user", "content": [
        {"type": "text", "text": "📎 .env (the attachment is no longer available)"}, {"type": "text", "text": "hi"}]}]
    assert panel().restore("garbage", "fast", None)[0] == chats.empty_store()


def test_import_then_export_round_trip(tmp_path: Path) -> None:
    ui = panel()
    saved = ui.saved(chats.empty_store(), [QUESTION, ANSWER], "fast", None)
    exported = path_of(saved[4])
    outputs = ui.imported(chats.empty_store(), exported, None, "budget", None)
    store = outputs[0]
    assert chats.current(store)["messages"] == [QUESTION, ANSWER] and outputs[5] == [QUESTION, ANSWER]
    assert Path(path_of(outputs[4])).read_text() == Path(exported).read_text()
    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": "world"}')
    refused = ui.imported(store, str(bad), None, "fast", None)
    assert refused[0] == store  # nothing imported, nothing lost
    assert ui.imported(store, None, None, "fast", None)[0] == store


def _config(fake: FakeUpstream, secret: str) -> dict:
    settings = make_settings(fake.base_url, CHATBOT_BROWSER_SECRET=secret)
    demo = switchboard.build(settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        switchboard.launch(demo, settings, server_port=port, prevent_thread_lock=True, quiet=True)
        text = httpx.get(demo.local_url + "config", timeout=10).text
    finally:
        demo.close()
    assert secret not in text
    states = [c["props"] for c in json.loads(text)["components"] if c.get("type") == "browserstate"]
    return next(p for p in states if p.get("storage_key") == chats.STORAGE_KEY)


def test_two_starts_with_one_secret_use_the_same_browser_key(fake: FakeUpstream) -> None:
    first = _config(fake, "operator-secret-aaaaaaaaaaaa")
    second = _config(fake, "operator-secret-aaaaaaaaaaaa")
    other = _config(fake, "operator-secret-bbbbbbbbbbbb")
    assert first["secret"] == second["secret"] != other["secret"]
    assert first["default_value"] == chats.empty_store()


class Tab:
    """What the handlers read from a gr.Request: the tab's session and the browser's language."""

    def __init__(self, session: str = "tab-1") -> None:
        self.session_hash = session
        self.headers = {"accept-language": "en"}


def test_a_chat_is_listed_when_its_first_message_is_sent_and_its_reply_saved_by_id() -> None:
    """13.7: the new chat is listed (and chosen) at once, under the id it had on screen; the reply's save
    goes to that chat even when another one is current by then, never over the current one."""
    ui = panel()
    older = chats.save(chats.empty_store(), [QUESTION, ANSWER], "fast", None)
    started = ui.started(older, "newchat1", {"text": "Largest ocean?", "files": []}, "fast", Tab())
    store, listing, title = started[0], started[1], started[2]
    assert store["current"] == "newchat1" and listing.value == "newchat1" and title.value == "Largest ocean?"
    assert [c[1] for c in listing.choices] == ["newchat1", older["current"]]
    assert chats.find(store, "newchat1")["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Largest ocean?"}]}]
    # the older chat became current meanwhile (a stale store): the reply still lands in its own chat
    stale = chats.select(store, older["current"])
    reply = [{"role": "user", "content": "Largest ocean?"}, {"role": "assistant", "content": "The Pacific."}]
    saved = store_of(ui.saved(stale, {"messages": reply, "chat": "newchat1", "at": 2.0}, "fast", Tab()))
    assert chats.find(saved, older["current"])["messages"] == [QUESTION, ANSWER]
    assert [m["content"][0]["text"] for m in chats.find(saved, "newchat1")["messages"]] == [
        "Largest ocean?", "The Pacific."]
    assert saved["current"] == older["current"]
    # an id that is not one (forged) is never used; a repeated start changes nothing it holds
    assert ui.started(older, "../x", {"text": "hi"}, "fast", Tab())[0] == older
    again = ui.started(saved, "newchat1", {"text": "other"}, "fast", Tab())[0]
    assert chats.find(again, "newchat1")["messages"] == chats.find(saved, "newchat1")["messages"]
    # a file the message names outside Gradio's upload folder is never kept (only its name, as a note)
    named = ui.started(older, "newchat2", {"text": "hi", "files": ["/etc/passwd"]}, "fast", Tab())[0]
    assert chats.find(named, "newchat2")["messages"][0]["content"] == [
        {"type": "text", "text": "📎 passwd (the attachment is no longer available)"}, {"type": "text", "text": "hi"}]


def test_changes_to_the_list_wait_while_a_reply_is_in_progress() -> None:
    """13.7: open, new, rename, delete and import are refused (the list and the chat stay as they are)
    while the tab's reply is in progress; another tab is not affected; the reply's save frees the tab."""
    ui = panel()
    store = chats.save(chats.empty_store(), [QUESTION, ANSWER], "fast", None)
    chat_id = store["current"]
    other = chats.save({**store, "current": None}, [ANSWER], "fast", None)
    on_screen = other["current"]
    ui.started(other, on_screen, {"text": "more"}, "fast", Tab("tab-1"))  # a message is sent: the tab waits
    tab = Tab("tab-1")
    refused = [
        ui.open(other, chat_id, on_screen, "fast", tab), ui.start_new(other, on_screen, "fast", tab),
        ui.deleted(other, on_screen, "fast", tab), ui.imported(other, None, on_screen, "fast", tab),
        ui.renamed(other, on_screen, "Renamed", tab),
    ]
    for outputs in refused:  # the list's choice goes back to the chat on screen; the store is not written
        assert outputs[1].value == on_screen and len(outputs) in (5, 10)
        assert all(o == gr.skip() for i, o in enumerate(outputs) if i != 1)
    assert ui.open(other, chat_id, None, "fast", Tab("tab-2"))[0]["current"] == chat_id  # another tab: no wait
    ui.saved(other, {"messages": [ANSWER], "chat": on_screen}, "fast", tab)
    assert ui.open(other, chat_id, on_screen, "fast", tab)[0]["current"] == chat_id
