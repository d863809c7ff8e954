"""Attachments: images to vision models as OpenAI image parts, text files inlined, everything else refused
with a clear message; end to end through the UI's chat function to the fake upstream."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
from conftest import make_settings
from fake_upstream import FakeUpstream
from PIL import Image

from chatbot.core.attachments import MAX_IMAGE_BYTES, MAX_IMAGE_SIDE, AttachmentRefused, compose, read_part, text_block
from chatbot.core.settings import Settings
from chatbot.core.tokens import IMAGE_PART_TOKENS
from chatbot.core.upstream import Upstream
from chatbot.web.chats_panel import upload_root
from chatbot.web.ui import ChatUI, ReplyView

MB = 1024 * 1024


@pytest.fixture
def uploads() -> Iterator[Path]:
    """A folder inside Gradio's upload folder, as if the files had been uploaded."""
    folder = Path(upload_root()) / f"test-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    yield folder
    for item in folder.iterdir():
        item.unlink()
    folder.rmdir()


def png(path: Path, size: tuple[int, int] = (32, 16), noise: bool = False) -> Path:
    image = Image.effect_noise(size, 80).convert("RGB") if noise else Image.new("RGB", size, (200, 30, 30))
    image.save(path, "PNG")
    return path


def read(path: Path, **kwargs: object) -> dict:
    options = {"allowed_root": path.parent, "max_bytes": 20 * MB, "max_text_chars": 100_000, **kwargs}
    return read_part(str(path), None, **options)  # type: ignore[arg-type]


def test_an_image_becomes_a_data_url_image_part(tmp_path: Path) -> None:
    part = read(png(tmp_path / "red.png"))
    assert part["type"] == "image_url"
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (32, 16)


def test_a_large_image_is_scaled_down_to_fit(tmp_path: Path) -> None:
    big = png(tmp_path / "photo.png", (3000, 2000), noise=True)
    assert big.stat().st_size > MAX_IMAGE_BYTES
    url = read(big)["image_url"]["url"]
    data = base64.b64decode(url.split(",", 1)[1])
    assert len(data) <= MAX_IMAGE_BYTES
    assert max(Image.open(io.BytesIO(data)).size) <= MAX_IMAGE_SIDE


def test_a_text_file_is_inlined_with_its_name(tmp_path: Path) -> None:
    source = tmp_path / "notes.md"
    source.write_text("# Notes\n```py\nprint(1)\n```\n", encoding="utf-8")
    part = read(source)
    assert part == {"type": "text", "text": text_block("notes.md", source.read_text())}
    assert part["text"].startswith("📎 notes.md\n````\n")  # a fence the file's own ``` cannot close


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("program.exe", b"MZ\x90\x00\x03\x00\x00\x00" * 10, "attachment_unsupported"),
        ("latin1.txt", "café".encode("latin-1"), "attachment_unsupported"),
        ("fake.png", b"\x89PNG not really", "attachment_unsupported"),
        ("huge.txt", b"a" * 2_000, "attachment_too_large"),
    ],
)
def test_files_that_cannot_be_sent_are_refused_by_name(tmp_path: Path, name: str, content: bytes, kind: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AttachmentRefused) as refused:
        read(path, max_bytes=1_000)
    assert refused.value.friendly.kind == kind and name in refused.value.friendly.text
    spanish = refused.value.friendly.localized("es")
    assert name in spanish and "No se envió nada" in spanish


def test_files_outside_the_upload_folder_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / ".env"
    secret.parent.mkdir()
    secret.write_text("OPENAI_API_KEY=sk-secret")
    with pytest.raises(AttachmentRefused):
        read_part(str(secret), None, allowed_root=tmp_path / "uploads", max_bytes=MB, max_text_chars=1000)
    with pytest.raises(AttachmentRefused):
        read_part(str(tmp_path / "uploads" / ".." / "outside" / ".env"), None, allowed_root=tmp_path / "uploads",
                  max_bytes=MB, max_text_chars=1000)


def test_compose_text_files_stay_a_string_and_images_make_parts(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha")
    options = {"allowed_root": tmp_path, "max_bytes": MB, "max_text_chars": 1000, "model": "m"}
    plain = compose("Read this", [(str(tmp_path / "a.txt"), None)], vision=False, **options)
    assert plain == "Read this\n\n" + text_block("a.txt", "alpha")
    parts = compose("And this", [(str(png(tmp_path / "b.png")), None), (str(tmp_path / "a.txt"), None)],
                    vision=True, **options)
    assert parts[0] == {"type": "text", "text": "And this\n\n" + text_block("a.txt", "alpha")}
    assert parts[1]["type"] == "image_url" and len(parts) == 2
    with pytest.raises(AttachmentRefused) as refused:
        compose("See", [(str(tmp_path / "b.png"), None)], vision=False, **options)
    assert refused.value.friendly.kind == "no_vision"
    with pytest.raises(AttachmentRefused) as refused:
        compose("Many", [(str(tmp_path / "a.txt"), None)] * 11, vision=True, **options)
    assert refused.value.friendly.kind == "too_many_attachments"


def uploaded_ui(settings: Settings, uploads: Path) -> ChatUI:
    """The UI's chat function, with Gradio's record of uploads standing for every file in ``uploads``
    (tests/test_file_access.py uploads through Gradio's real upload route)."""
    ui = ChatUI(settings, Upstream(settings))
    ui.files.uploaded = lambda path: Path(path).resolve().parent == uploads.resolve()
    return ui


SESSION = gr.Request(session_hash="test-session")


async def _final(ui: ChatUI, message: object, model: str, history: list | None = None) -> list:
    updates = [update async for update in ui.respond(message, history or [], model, request=SESSION)]
    return updates[-1]


async def test_an_image_reaches_the_upstream_as_an_image_part(fake: FakeUpstream, uploads: Path) -> None:
    settings = make_settings(fake.base_url)
    ui = uploaded_ui(settings, uploads)
    image = png(uploads / "cat.png")
    shown = await _final(ui, {"text": "What is this?", "files": [str(image)]}, "fast")
    assert shown[-2]["content"]["text"].startswith("Hello from gpt-4.1-mini")
    content = fake.last.body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()

    # The next turn replays the image from the history (a vision model) ...
    history = [{"role": "user", "content": [{"type": "file", "file": {"path": str(image), "orig_name": "cat.png"}},
                                            {"type": "text", "text": "What is this?"}]},
               *shown]
    await _final(ui, "And its colour?", "fast", history)
    sent = fake.last.body["messages"]
    assert sent[1]["content"][1]["type"] == "image_url" and sent[-1] == {"role": "user", "content": "And its colour?"}
    # ... and leaves it out for a model without vision (the text stays).
    await _final(ui, "Again?", "budget", history)
    assert fake.last.body["messages"][1] == {"role": "user", "content": "What is this?"}


async def test_text_files_are_inlined_for_any_model(fake: FakeUpstream, uploads: Path) -> None:
    settings = make_settings(fake.base_url)
    ui = uploaded_ui(settings, uploads)
    (uploads / "data.csv").write_text("a,b\n1,2\n")
    await _final(ui, {"text": "Sum it", "files": [str(uploads / "data.csv")]}, "budget")
    assert fake.last.body["messages"][-1]["content"] == "Sum it\n\n" + text_block("data.csv", "a,b\n1,2\n")


async def test_refusals_are_inline_and_nothing_is_sent(fake: FakeUpstream, uploads: Path) -> None:
    settings = make_settings(fake.base_url, CHATBOT_MAX_UPLOAD_MB="0.01")
    ui = uploaded_ui(settings, uploads)
    (uploads / "big.txt").write_text("x" * 20_000)
    (uploads / "blob.bin").write_bytes(b"\x00\x01\x02" * 10)
    image = png(uploads / "dog.png")
    cases = [
        ({"text": "hi", "files": [str(uploads / "big.txt")]}, "fast", "too large"),
        ({"text": "hi", "files": [str(uploads / "blob.bin")]}, "fast", "cannot be read here"),
        ({"text": "hi", "files": [str(image)]}, "budget", "cannot see images"),
        ({"text": "hi", "files": ["/etc/passwd"]}, "fast", "cannot be read here"),
    ]
    for message, model, words in cases:
        shown = await _final(ui, message, model)
        assert len(shown) == 1 and words in shown[0]["metadata"]["title"]  # one notice, the message its title
        assert "Traceback" not in str(shown)
    assert not fake.requests


async def test_images_count_against_the_token_budget(fake: FakeUpstream, uploads: Path) -> None:
    settings = make_settings(fake.base_url, CHATBOT_CONTEXT_TOKENS=str(IMAGE_PART_TOKENS))
    ui = uploaded_ui(settings, uploads)
    shown = await _final(ui, {"text": "hi", "files": [str(png(uploads / "p.png"))]}, "fast")
    assert "too long" in shown[-1]["metadata"]["title"] and not fake.requests


async def test_a_retry_sends_the_same_attachments(fake: FakeUpstream, uploads: Path) -> None:
    """Retry hands the chat function the files as Gradio file dicts rather than paths."""
    settings = make_settings(fake.base_url)
    ui = uploaded_ui(settings, uploads)
    image = png(uploads / "cat.png")
    message = {"text": "Again?", "files": [{"path": str(image), "orig_name": "my cat.png", "meta": {}}]}
    await _final(ui, message, "fast")
    assert fake.last.body["messages"][-1]["content"][1]["type"] == "image_url"
    _, _, _, finished = await ui.after_reply(message, [], [], "fast", ReplyView(), None, "en")
    assert finished["messages"][0]["content"][0] == {"type": "file", "file": {"path": str(image),
                                                                              "orig_name": "my cat.png"}}
