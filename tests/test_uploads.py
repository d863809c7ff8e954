"""SessionFiles: which attachments a session may have the app read (end to end: tests/test_file_access.py)."""

from __future__ import annotations

import os
from pathlib import Path

from chatbot.web.chats import clean_messages
from chatbot.web.uploads import SessionFiles


def files_in(root: Path, uploaded: set[str], key: bytes = b"k" * 32, **options: int) -> SessionFiles:
    return SessionFiles(lambda: str(root), key, lambda path: path in uploaded, **options)


def upload(root: Path, name: str, content: str, uploaded: set[str]) -> str:
    """What Gradio's upload route does: a new file renamed into place, recorded."""
    folder = root / "h"
    folder.mkdir(exist_ok=True)
    staging = root / f".{name}.part"
    staging.write_text(content)
    os.replace(staging, folder / name)
    uploaded.add(str(folder / name))
    return str(folder / name)


def test_an_upload_is_the_first_attaching_sessions(tmp_path: Path) -> None:
    uploaded: set[str] = set()
    files = files_in(tmp_path, uploaded)
    path = upload(tmp_path, "a.txt", "alpha", uploaded)
    assert not files.may_read("A", path)  # nothing before it is attached
    assert files.attach("A", path) and files.may_read("A", path) and files.attach("A", path)
    assert not files.attach("B", path) and not files.may_read("B", path)
    upload(tmp_path, "a.txt", "alpha", uploaded)  # B uploads the same bytes: Gradio writes the file again
    assert files.attach("B", path) and files.may_read("A", path)


def test_nothing_gradios_upload_did_not_write_and_nothing_outside_the_folder(tmp_path: Path) -> None:
    uploaded: set[str] = set()
    root = tmp_path / "uploads"
    root.mkdir()
    files = files_in(root, uploaded)
    planted = root / "copy" / "secret.txt"
    planted.parent.mkdir()
    planted.write_text("s")
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    uploaded.add(str(outside))
    for path in (str(planted), str(outside), str(root / ".." / "secret.txt"), "/etc/passwd", "", None, 7, "a\x00b"):
        assert not files.attach("A", path) and not files.may_read("A", path)
    path = upload(root, "a.txt", "alpha", uploaded)
    assert not files.attach(None, path) and not files.attach("", path)


def test_a_saved_chats_attachment_comes_back_only_with_the_apps_seal(tmp_path: Path) -> None:
    uploaded: set[str] = set()
    files = files_in(tmp_path, uploaded)
    path = upload(tmp_path, "a.txt", "alpha", uploaded)
    files.attach("A", path)
    message = [{"role": "user", "content": [{"type": "file", "file": {"path": path, "orig_name": "a.txt"}}]}]
    saved = clean_messages(message, files.keeper("A", saving=True))
    seal = saved[0]["content"][0]["file"]["seal"]
    assert seal == files.seal(path)
    assert clean_messages(message, files.keeper("C", saving=True))[0]["content"][0]["type"] == "text"  # not C's

    assert clean_messages(saved, files.keeper("B"))[0]["content"][0]["file"]["path"] == path
    assert files.may_read("B", path)  # B opened the saved chat
    for forged in (None, "", "0" * 64, seal[::-1], files_in(tmp_path, uploaded, key=b"x" * 32).seal(path)):
        part = {"type": "file", "file": {"path": path, "orig_name": "a.txt", "seal": forged}}
        kept = clean_messages([{"role": "user", "content": [part]}], files.keeper("F"))
        assert kept[0]["content"][0]["type"] == "text" and not files.may_read("F", path)


def test_the_oldest_paths_are_forgotten_beyond_the_bound(tmp_path: Path) -> None:
    uploaded: set[str] = set()
    files = files_in(tmp_path, uploaded, max_paths=2)
    paths = [upload(tmp_path, f"{i}.txt", str(i), uploaded) for i in range(3)]
    for path in paths:
        assert files.attach("A", path)
    assert not files.may_read("A", paths[0]) and files.may_read("A", paths[1]) and files.may_read("A", paths[2])
