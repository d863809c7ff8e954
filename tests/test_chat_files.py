"""One saved chat as a file: JSON and Markdown exports, a JSON export imported back as a new chat, and
anything else refused with a plain message."""

from __future__ import annotations

import json
from pathlib import Path

from test_chats import conversation

from chatbot.core.i18n import text
from chatbot.web import chat_files, chats


def test_export_then_import_gives_back_the_same_conversation() -> None:
    store = chats.save(chats.empty_store(), conversation(), "fast", None)
    chat = chats.current(store)
    exported = chat_files.export_json(chat)
    payload = json.loads(exported)
    assert payload["format"] == chat_files.EXPORT_FORMAT and payload["title"] == chat["title"]
    assert payload["messages"][0] == {"role": "user", "content": "Write   a haiku\nabout tabs"}
    imported = chat_files.import_json(exported)
    assert imported["messages"] == chat["messages"]
    assert (imported["title"], imported["model"]) == (chat["title"], chat["model"])
    assert imported["id"] != chat["id"]
    assert chat_files.export_json(imported) == exported  # stable: a second round trip changes nothing
    both = chats.add(store, imported)
    assert len(both["chats"]) == 2 and both["current"] == imported["id"]


def test_attachments_export_by_name_and_import_as_a_note(tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG...")
    message = {"role": "user", "content": [{"type": "file", "file": {"path": str(image), "orig_name": "cat.png"}},
                                           {"type": "text", "text": "What is it?"}]}
    store = chats.save(chats.empty_store(), [message], "fast", tmp_path)
    chat = chats.current(store)
    assert chat["messages"][0]["content"][0]["file"]["path"] == str(image)
    exported = chat_files.export_json(chat)
    assert str(tmp_path) not in exported and '"name": "cat.png"' in exported
    back = chat_files.import_json(exported)["messages"][0]["content"]
    assert back[0] == {"type": "text", "text": "📎 cat.png (the attachment is no longer available)"}
    assert "📎 cat.png" in chat_files.export_markdown(chat)


def test_markdown_export_is_readable() -> None:
    chat = chats.current(chats.save(chats.empty_store(), conversation(), "fast", None))
    markdown = chat_files.export_markdown(chat)
    assert markdown.startswith("# Write a haiku\n")  # the first line (issue 15.2)
    assert "**You:**\n\nWrite   a haiku\nabout tabs" in markdown
    assert "<details>\n<summary>Thinking</summary>\n\nLet me count syllables.\n\n</details>" in markdown
    assert "def f():\n\treturn 1\n\n  indented" in markdown
    assert "> **12 tokens in · 3 out · $0.0001**" in markdown
    assert "**Tú:**" in chat_files.export_markdown(chat, "es")


def test_imports_that_are_not_exports_are_refused_plainly() -> None:
    for data in (b"\xff\xfe", "not json", "[]", '{"format": "other", "messages": []}',
                 json.dumps({"format": chat_files.EXPORT_FORMAT, "messages": [{"role": "system", "content": "x"}]})):
        try:
            chat_files.import_json(data)
        except ValueError as exc:
            assert str(exc) == text("import_failed") and "Traceback" not in str(exc)
        else:
            raise AssertionError(f"{data!r} was imported")
    try:
        chat_files.import_json("{}", "pt")
    except ValueError as exc:
        assert "nada foi importado" in str(exc)


def test_write_export_names_the_file_after_the_title_in_a_folder_per_content(tmp_path: Path) -> None:
    chat = chats.current(chats.save(chats.empty_store(), conversation(), "fast", None))
    md = Path(chat_files.write_export(chat, "md", tmp_path))
    as_json = Path(chat_files.write_export(chat, "json", tmp_path))
    assert (md.name, as_json.name) == ("write-a-haiku.md", "write-a-haiku.json")
    assert md.read_text(encoding="utf-8") == chat_files.export_markdown(chat)
    assert json.loads(as_json.read_text(encoding="utf-8")) == json.loads(chat_files.export_json(chat))
    assert md.parent != as_json.parent and md.parent.parent == tmp_path
    assert chat_files.write_export(chat, "md", tmp_path) == str(md)  # the same content: the same file
    renamed = chats.current(chats.rename({"version": 1, "current": chat["id"], "chats": [chat]}, chat["id"], "¿?"))
    assert Path(chat_files.write_export(renamed, "md", tmp_path)).name == "chat.md"  # nothing left of the title


def test_a_chats_settings_are_saved_exported_and_imported_with_it() -> None:
    """Issue 15.4: the chat's own system prompt, temperature and reply length travel with it (bounded)."""
    mine = {"system": "Answer as a pirate.", "temperature": 0.4, "max_tokens": 300}
    store = chats.save(chats.empty_store(), conversation(), "fast", None, settings=mine)
    chat = chats.current(store)
    assert chat["settings"] == mine
    assert chats.normalize_store(store, None)["chats"][0]["settings"] == mine  # survives the browser
    exported = chat_files.export_json(chat)
    assert json.loads(exported)["settings"] == mine
    assert chat_files.import_json(exported)["settings"] == mine
    forged = json.loads(exported) | {"settings": {"system": 7, "temperature": 99, "max_tokens": True}}
    assert chat_files.import_json(json.dumps(forged))["settings"] == {"temperature": 2.0}
    plain = chats.save(chats.empty_store(), conversation(), "fast", None)
    assert "settings" not in chats.current(plain) and "settings" not in json.loads(
        chat_files.export_json(chats.current(plain)))


def test_the_export_folder_is_pruned_once_every_few_writes(tmp_path: Path) -> None:
    """Exports: at most ``keep`` folders after a prune, which comes once every ``every`` writes (not at each)."""
    exports = chat_files.Exports(tmp_path, keep=2, every=3)

    def chat(n: int) -> dict:
        return chats.find(chats.save(chats.empty_store(), [{"role": "user", "content": f"question {n}"},
                                                          {"role": "assistant", "content": "answer"}],
                                     "fast", None, chat_id=f"c{n}"), f"c{n}")

    def folders() -> int:
        return sum(p.is_dir() for p in tmp_path.iterdir())

    exports.write(chat(1), "md")
    exports.write(chat(2), "md")
    assert folders() == 2
    exports.write(chat(3), "md")  # the third write prunes
    assert folders() == 2
    exports.write(chat(4), "md")
    exports.write(chat(5), "md")
    assert folders() == 4  # no prune between
    path = exports.write(chat(6), "md")
    assert folders() == 2 and Path(path).exists()  # the newest kept
