"""The visitor's message as the box sends it (any shape, from the browser) and as the chat shows it."""

from __future__ import annotations

from chatbot.web.visitor_message import files_of, text_only, user_message, words


def test_files_come_as_paths_or_file_dicts_and_junk_is_skipped() -> None:
    message = {
        "text": "look",
        "files": ["/tmp/a.png", {"path": "/tmp/b.txt", "orig_name": "notes.txt"}, {"path": "/tmp/c"},
                  "", None, 7, {"path": 3}, {"orig_name": "no path"}, {"path": "/tmp/d", "orig_name": 5}],
    }
    assert files_of(message) == [
        ("/tmp/a.png", None), ("/tmp/b.txt", "notes.txt"), ("/tmp/c", None), ("/tmp/d", None),
    ]
    assert files_of({"text": "x", "files": None}) == [] and files_of({}) == []


def test_words_and_text_only_of_any_shape() -> None:
    assert words({"text": "hi", "files": []}) == "hi"
    assert words("plain") == "plain"
    assert words({"text": 3}) == "" and words(None) == "" and words(["x"]) == ""
    assert text_only("plain") and text_only({"text": "hi", "files": []}) and text_only(None)
    assert not text_only({"text": "", "files": ["/tmp/a.png"]})


def test_the_chat_shows_files_then_text_as_text_parts() -> None:
    shown = user_message({"text": "  indented\tcode", "files": [{"path": "/up/x/report.pdf"}, "/up/y/a.png"]})
    assert shown == {"role": "user", "content": [
        {"type": "file", "file": {"path": "/up/x/report.pdf", "orig_name": "report.pdf"}},
        {"type": "file", "file": {"path": "/up/y/a.png", "orig_name": "a.png"}},
        {"type": "text", "text": "  indented\tcode"},
    ]}
    assert user_message({"text": "", "files": []}) == {"role": "user", "content": []}
    assert user_message("hello") == {"role": "user", "content": [{"type": "text", "text": "hello"}]}
    assert user_message(None) == {"role": "user", "content": [{"type": "text", "text": ""}]}
