"""Attachments: files a visitor adds to a message, turned into OpenAI content parts.

- Images (PNG, JPEG, WebP, GIF) become ``{"type": "image_url", "image_url": {"url": "data:...;base64,..."}}``
  parts, for vision-capable models only. Images larger than :data:`MAX_IMAGE_SIDE` pixels or
  :data:`MAX_IMAGE_BYTES` are scaled down and re-encoded (Pillow), so a phone photo fits every provider.
- Text files (anything that decodes as UTF-8 without NUL bytes) are inlined into the message text in a
  fenced block headed with the file's name.
- Anything else, anything too large, and too many files are refused with a friendly message naming the
  file; nothing is sent then.

Files are read only from Gradio's upload folder (``allowed_root``): a history replayed from the browser
can name any path, and none outside that folder is ever opened (the UI also asks
:class:`chatbot.web.uploads.SessionFiles` whether the visitor's session may have the file read). Everything
here is blocking CPU and disk work: call it from a worker thread.
"""

from __future__ import annotations

import base64
import io
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from chatbot.core.errors import Friendly, friendly

MAX_ATTACHMENTS = 10
MAX_IMAGE_SIDE = 2_048
MAX_IMAGE_BYTES = 4 * 1024 * 1024
IMAGE_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
#: File types the upload box offers and Gradio accepts (its file picker, drop and upload check): the
#: images read here by name, any ``text/*`` file, and text formats browsers give other types. Text files are
#: still recognised by their content, whatever the name.
FILE_TYPES = [*IMAGE_SUFFIXES, "text", ".txt", ".md", ".markdown", ".csv", ".tsv", ".json", ".jsonl", ".yaml",
              ".yml", ".toml", ".xml", ".html", ".css", ".js", ".ts", ".py", ".ipynb", ".java", ".c", ".h", ".cpp",
              ".go", ".rs", ".rb", ".php", ".sh", ".sql", ".log", ".ini", ".cfg", ".tex", ".srt"]


class AttachmentRefused(Exception):
    """A file cannot be sent; ``friendly`` says why (in any language)."""

    def __init__(self, error: Friendly) -> None:
        super().__init__(error.text)
        self.friendly = error


def human_size(size: int) -> str:
    """Bytes as '812 KB' / '4.2 MB' (units every language here reads)."""
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def display_name(path: str, name: str | None = None) -> str:
    """The name a person gave the file (Gradio keeps it as the last path component)."""
    shown = name if isinstance(name, str) and name.strip() else os.path.basename(path)
    shown = " ".join(shown.split())[:120]
    return shown or "file"


def _fence(body: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def text_block(name: str, body: str) -> str:
    """How a text file is inlined: its name, then its content in a fence no line of it can close."""
    fence = _fence(body)
    return f"📎 {name}\n{fence}\n{body}\n{fence}"


IMAGE_CACHE_ENTRIES = 16
_image_cache: LRUCache[tuple[str, int, int], str] = LRUCache(IMAGE_CACHE_ENTRIES)
_image_cache_lock = threading.Lock()


def _image_data_url(data: bytes) -> str | None:
    """The image as a data URL (scaled down when needed), or None when it is not an image we take."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            if kind not in IMAGE_MIME:
                return None
            if len(data) <= MAX_IMAGE_BYTES and max(image.size) <= MAX_IMAGE_SIDE:
                return f"data:{IMAGE_MIME[kind]};base64,{base64.b64encode(data).decode('ascii')}"
            image.seek(0)
            frame = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    side = MAX_IMAGE_SIDE
    while side >= 256:
        copy = frame.copy()
        copy.thumbnail((side, side))
        out = io.BytesIO()
        if copy.mode == "RGBA":
            copy.save(out, "PNG", optimize=True)
            mime = "image/png"
        else:
            copy.save(out, "JPEG", quality=85, optimize=True)
            mime = "image/jpeg"
        if out.tell() <= MAX_IMAGE_BYTES:
            return f"data:{mime};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"
        side //= 2
    return None


def read_part(path: str, name: str | None, *, allowed_root: str | os.PathLike[str], max_bytes: int,
              max_text_chars: int, images: str = "encode") -> dict[str, Any] | None:
    """One attachment as a content part: an ``image_url`` part or a ``text`` part (the inlined file).
    ``images``: "encode" (a data URL), "estimate" (an empty ``image_url`` part, for counting tokens) or
    "skip" (None for an image). Raises :class:`AttachmentRefused`."""
    shown = display_name(path, name)
    file = Path(path)
    if not _inside(file, Path(allowed_root)) or not file.is_file():
        raise AttachmentRefused(friendly("attachment_unsupported", name=shown))
    size = file.stat().st_size
    if size > max_bytes:
        raise AttachmentRefused(friendly("attachment_too_large", name=shown, size=human_size(size),
                                         limit=human_size(max_bytes)))
    with file.open("rb") as handle:
        head = handle.read(16)
    looks_image = shown.lower().endswith(IMAGE_SUFFIXES) or head[:4] in (b"\x89PNG", b"GIF8", b"RIFF") or (
        head[:3] == b"\xff\xd8\xff"
    )
    if looks_image and images != "encode":
        return {"type": "image_url", "image_url": {"url": ""}} if images == "estimate" else None
    data = file.read_bytes()
    if looks_image:
        key = (str(file.resolve()), size, int(file.stat().st_mtime_ns))
        with _image_cache_lock:
            url = _image_cache.get(key)
        if url is None:
            url = _image_data_url(data)
            if url is not None:
                with _image_cache_lock:
                    _image_cache[key] = url
        if url is not None:
            return {"type": "image_url", "image_url": {"url": url}}
        if shown.lower().endswith(IMAGE_SUFFIXES):
            raise AttachmentRefused(friendly("attachment_unsupported", name=shown))
    if b"\x00" in data[:8192]:
        raise AttachmentRefused(friendly("attachment_unsupported", name=shown))
    try:
        body = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AttachmentRefused(friendly("attachment_unsupported", name=shown)) from None
    if len(body) > max_text_chars:
        raise AttachmentRefused(friendly("attachment_too_large", name=shown, size=human_size(len(data)),
                                         limit=human_size(max_text_chars)))
    return {"type": "text", "text": text_block(shown, body)}


def compose(text: str, files: Iterable[tuple[str, str | None]], *, vision: bool, model: str,
            allowed_root: str | os.PathLike[str], max_bytes: int, max_text_chars: int) -> str | list[dict[str, Any]]:
    """The user message for ``text`` plus attached ``files`` ((path, name) pairs): a plain string when no
    image is attached (text files inlined), else ``[text part, image parts...]``. Raises
    :class:`AttachmentRefused` (too many, too large, unsupported, or an image for a model without vision)."""
    files = list(files)
    if len(files) > MAX_ATTACHMENTS:
        raise AttachmentRefused(friendly("too_many_attachments", limit=MAX_ATTACHMENTS))
    texts = [text] if text.strip() else []
    images: list[dict[str, Any]] = []
    for path, name in files:
        part = read_part(path, name, allowed_root=allowed_root, max_bytes=max_bytes, max_text_chars=max_text_chars)
        if part is None:
            continue
        if part["type"] == "image_url":
            if not vision:
                raise AttachmentRefused(friendly("no_vision", model=model))
            images.append(part)
        else:
            texts.append(part["text"])
    combined = "\n\n".join(texts)
    if not images:
        return combined
    return ([{"type": "text", "text": combined}] if combined else []) + images

