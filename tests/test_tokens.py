"""Tests for chatbot.core.tokens: offline encodings, model -> encoding mapping, message counting."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import math
import os
import threading
import uuid
from pathlib import Path

import pytest
import requests
import tiktoken
import tiktoken.load
import tiktoken.registry
from conftest import join_all

from chatbot.core import tokens
from chatbot.core.tokens import (
    ENCODING_SOURCES,
    IMAGE_PART_TOKENS,
    NON_OPENAI_MARGIN,
    OfflineEncodingError,
    TokenCounter,
    counter_for,
    encoding_name_for,
    ensure_offline_encodings,
    is_openai_model,
)

pytestmark = pytest.mark.usefixtures("offline_encodings")


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_read_file = tiktoken.load.read_file

    def read_file(blobpath: str) -> bytes:
        if "://" in blobpath:
            raise NetworkUsed(blobpath)
        return real_read_file(blobpath)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise NetworkUsed(args)

    monkeypatch.setattr(tiktoken.load, "read_file", read_file)
    monkeypatch.setattr(requests, "get", forbidden)
    monkeypatch.setattr(requests.Session, "request", forbidden)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    return cache


def cache_file(cache: Path, name: str) -> Path:
    url = ENCODING_SOURCES[name][0]
    return cache / hashlib.sha1(url.encode()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- offline encodings ---------------------------------------------------------------------------------


def test_constants_match_tiktoken_source() -> None:
    spec = importlib.util.find_spec("tiktoken_ext.openai_public")
    assert spec is not None
    assert spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    found = {}
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and fn.name in ENCODING_SOURCES:
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_tiktoken_bpe":
                    url = ast.literal_eval(node.args[0])
                    digest = next(
                        ast.literal_eval(k.value) for k in node.keywords if k.arg == "expected_hash"
                    )
                    found[fn.name] = (url, digest)
    assert found == ENCODING_SOURCES


def test_offline_load_with_network_forbidden(
    fresh_cache: Path, no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_offline_encodings()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(fresh_cache)
    for name, (_, digest) in ENCODING_SOURCES.items():
        assert sha256(cache_file(fresh_cache, name)) == digest
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # force tiktoken to read its cache again
    assert tiktoken.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert tiktoken.get_encoding("o200k_base").encode("hello world") == [24912, 2375]


def test_corrupted_cache_file_is_repaired(
    fresh_cache: Path, no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_offline_encodings()
    path = cache_file(fresh_cache, "o200k_base")
    path.write_bytes(b"garbage")
    # tiktoken itself rejects the bad file and would go to the network for a fresh copy
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    with pytest.raises(NetworkUsed):
        tiktoken.get_encoding("o200k_base")
    path.write_bytes(b"garbage")
    ensure_offline_encodings()
    assert sha256(path) == ENCODING_SOURCES["o200k_base"][1]
    assert tiktoken.get_encoding("o200k_base").encode("hello world") == [24912, 2375]


def test_bad_bundled_file_raises(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_read_packaged", lambda name: b"not the real vocabulary")
    with pytest.raises(OfflineEncodingError, match="sha256"):
        ensure_offline_encodings()
    assert not fresh_cache.exists() or not any(fresh_cache.iterdir())


def test_missing_bundle_raises(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "PACKAGED_DATA", ("no_such_package_here", "data"))
    with pytest.raises(OfflineEncodingError, match="no_such_package_here"):
        ensure_offline_encodings()


def test_second_call_is_fast_path(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_offline_encodings()

    def boom(*args: object) -> None:
        raise AssertionError("re-verified although nothing changed")

    monkeypatch.setattr(tokens, "_sha256", boom)
    monkeypatch.setattr(tokens, "_read_packaged", boom)
    ensure_offline_encodings()


def test_default_dir_when_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ensure_offline_encodings()
    expected = tmp_path / "xdg" / "switchboard" / "tiktoken"
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(expected)
    assert sha256(cache_file(expected, "cl100k_base")) == ENCODING_SOURCES["cl100k_base"][1]


def test_falls_back_to_temp_dir_when_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    ensure_offline_encodings()
    cache = Path(os.environ["TIKTOKEN_CACHE_DIR"])
    assert cache.parent == tmp_path / "tmp"
    assert sha256(cache_file(cache, "o200k_base")) == ENCODING_SOURCES["o200k_base"][1]


def test_empty_cache_dir_setting_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    with pytest.raises(OfflineEncodingError, match="empty"):
        ensure_offline_encodings()


def test_concurrent_calls(fresh_cache: Path) -> None:
    barrier = threading.Barrier(8, timeout=60)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            ensure_offline_encodings()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    join_all(threads)
    assert errors == []
    assert sorted(p.name for p in fresh_cache.iterdir()) == sorted(
        cache_file(fresh_cache, name).name for name in ENCODING_SOURCES
    )


# --- model -> encoding -----------------------------------------------------------------------------------

MODELS = [
    ("gpt-4", "cl100k_base", True),
    ("gpt-4-0613", "cl100k_base", True),
    ("gpt-4-32k", "cl100k_base", True),
    ("gpt-4-turbo", "cl100k_base", True),
    ("gpt-4-turbo-2024-04-09", "cl100k_base", True),
    ("gpt-3.5-turbo", "cl100k_base", True),
    ("gpt-3.5-turbo-0125", "cl100k_base", True),
    ("gpt-35-turbo", "cl100k_base", True),
    ("text-embedding-3-small", "cl100k_base", True),
    ("text-embedding-ada-002", "cl100k_base", True),
    ("openai/gpt-4-turbo", "cl100k_base", True),
    ("ft:gpt-3.5-turbo-0125:acme::abc123", "cl100k_base", True),
    ("gpt-4o", "o200k_base", True),
    ("gpt-4o-mini", "o200k_base", True),
    ("gpt-4o-2024-08-06", "o200k_base", True),
    ("chatgpt-4o-latest", "o200k_base", True),
    ("gpt-4.1", "o200k_base", True),
    ("gpt-4.1-nano", "o200k_base", True),
    ("gpt-4.5-preview", "o200k_base", True),
    ("gpt-5", "o200k_base", True),
    ("gpt-5-mini", "o200k_base", True),
    ("o1", "o200k_base", True),
    ("o1-mini", "o200k_base", True),
    ("o3", "o200k_base", True),
    ("o3-mini", "o200k_base", True),
    ("o4-mini", "o200k_base", True),
    ("openai/gpt-4o", "o200k_base", True),
    ("OpenAI/GPT-4o", "o200k_base", True),
    ("ft:gpt-4o-mini-2024-07-18:acme::xyz", "o200k_base", True),
    ("claude-sonnet-4-6", "o200k_base", False),
    ("anthropic/claude-3-5-sonnet-20241022", "o200k_base", False),
    ("deepseek-chat", "o200k_base", False),
    ("deepseek/deepseek-r1", "o200k_base", False),
    ("meta-llama/llama-3.1-70b-instruct", "o200k_base", False),
    ("llama3:8b", "o200k_base", False),
    ("qwen/qwen-2.5-72b-instruct", "o200k_base", False),
    ("mistral-large-latest", "o200k_base", False),
    ("gemini-2.5-pro", "o200k_base", False),
    ("openai/gpt-oss-120b", "o200k_base", False),
    ("gpt-4-claude-tribute", "cl100k_base", True),  # pattern-based, like tiktoken's own prefixes
    ("o1ne", "o200k_base", False),
    ("", "o200k_base", False),
]


@pytest.mark.parametrize(("model", "encoding", "openai"), MODELS)
def test_encoding_name_for(model: str, encoding: str, openai: bool) -> None:
    assert encoding_name_for(model) == encoding
    assert is_openai_model(model) is openai


@pytest.mark.parametrize(
    "model",
    [m for m, _, openai in MODELS if openai and "/" not in m and m == m.lower() and not m.startswith("ft:")],
)
def test_agrees_with_tiktoken(model: str) -> None:
    assert encoding_name_for(model) == tiktoken.encoding_name_for_model(model)


# --- counting --------------------------------------------------------------------------------------------


def unique(text: str = "") -> str:
    return f"{text} {uuid.uuid4().hex}"


def test_count_follows_cookbook() -> None:
    counter = TokenCounter("gpt-4o")
    enc = tiktoken.get_encoding("o200k_base")
    content = unique("The quick brown fox")
    msg = {"role": "user", "content": content}
    assert counter.count(msg) == 3 + len(enc.encode("user")) + len(enc.encode(content))
    named = {"role": "user", "content": content, "name": "alice"}
    assert counter.count(named) == counter.count(msg) + len(enc.encode("alice")) + 1
    messages = [{"role": "system", "content": unique("Be brief.")}, msg]
    assert counter.count_messages(messages) == sum(counter.count(m) for m in messages) + 3
    assert counter.count_messages([]) == 3


def test_cl100k_counting() -> None:
    counter = TokenCounter("gpt-4")
    assert counter.encoding_name == "cl100k_base"
    assert counter.count({"role": "user", "content": "hello world"}) == 3 + 1 + 2


def test_special_token_text_counts_as_plain_text() -> None:
    counter = TokenCounter("gpt-4o")
    enc = tiktoken.get_encoding("o200k_base")
    text = "ignore this <|endoftext|> and <|endofprompt|>"
    expected = 3 + 1 + len(enc.encode(text, disallowed_special=()))
    assert counter.count({"role": "user", "content": text}) == expected
    assert expected > 3 + 1 + len(enc.encode("ignore this  and ")) + 2


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\ud83d\ude00", "x" + "\ud800" * 50])
def test_lone_surrogates_do_not_crash(text: str) -> None:
    assert TokenCounter("gpt-4o").count({"role": "user", "content": text}) > 4


def test_content_parts() -> None:
    counter = TokenCounter("gpt-4o")
    a, b = unique("first part"), unique("second part")
    parts = {
        "role": "user",
        "content": [
            {"type": "text", "text": a},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}},
            {"type": "text", "text": b},
        ],
    }
    text_only = counter.count(
        {"role": "user", "content": [{"type": "text", "text": a}, {"type": "text", "text": b}]}
    )
    assert counter.count(parts) == text_only + IMAGE_PART_TOKENS
    assert counter.count({"role": "assistant", "content": None}) == 3 + 1


def test_non_openai_margin() -> None:
    content = unique("How many tokens does Claude see here? " * 7)
    msg = {"role": "user", "content": content}
    raw = TokenCounter("gpt-4o").count(msg)
    claude = TokenCounter("anthropic/claude-sonnet-4-6")
    assert not claude.exact
    assert claude.margin == NON_OPENAI_MARGIN
    assert claude.count(msg) == math.ceil(raw * 115 / 100) > raw
    assert claude.count_messages([msg]) == claude.count(msg) + 3


def test_counts_are_cached() -> None:
    counter = TokenCounter("gpt-4o")
    msg = {"role": "user", "content": unique("cache me")}
    counter.count(msg)
    assert counter.misses == 1
    other = TokenCounter("openai/gpt-4.1")  # same encoding: shares the cache
    assert other.count(dict(msg)) == counter.count(msg)
    assert (counter.misses, other.misses, other.hits) == (1, 0, 1)
    TokenCounter("gpt-4").count(msg)  # different encoding: separate entry
    assert counter.count({"role": "assistant", "content": msg["content"]})
    assert counter.misses == 2


def test_lru_is_bounded() -> None:
    lru = tokens.CountCache(3, 3_000)
    for i in range(5):
        lru.put(i, i)
    assert len(lru) == 3
    assert lru.get(0) is None
    assert lru.get(4) == 4
    lru.get(2)
    lru.put(5, 5)
    assert lru.get(2) == 2
    assert lru.get(3) is None
    assert (tokens._message_cache.maxsize, tokens._message_cache.max_bytes) == (20_000, 64 << 20)


def test_count_cache_is_bounded_in_bytes() -> None:
    """Big texts evict by weight before the entry cap is reached; a text heavier than the cap is counted
    but not kept; the weights never add up to more than max_bytes."""
    cache = tokens.CountCache(100, 50_000)
    counter = TokenCounter("gpt-4o", cache=cache)
    texts = [unique("w " * 5_000) for _ in range(8)]  # about 10 kB each
    for text in texts:
        counter.count({"role": "user", "content": text})
    assert 0 < len(cache) < 8 and cache.weight <= 50_000
    assert counter.count({"role": "user", "content": texts[-1]}) and counter.hits == 1  # the newest stayed
    huge = {"role": "user", "content": unique("z " * 30_000)}
    first = counter.count(huge)
    assert counter.count(huge) == first and counter.hits == 1  # tokenised twice: never stored
    assert cache.weight <= 50_000


def test_uncached_counter_is_the_reference() -> None:
    plain = TokenCounter("claude-x", cache=None)
    message = {"role": "assistant", "content": [{"type": "text", "text": unique("hi")}, {"type": "image_url"}]}
    assert plain.count(message) == plain.count(message) == TokenCounter("claude-x").count(message)
    assert (plain.hits, plain.misses) == (0, 2)


def test_counter_for_shares_instances() -> None:
    assert counter_for("gpt-4o") is counter_for("gpt-4.1-mini")
    assert counter_for("claude-opus-4-6") is counter_for("deepseek-chat")
    assert counter_for("gpt-4o") is not counter_for("claude-opus-4-6")
    assert counter_for("gpt-4") is not counter_for("gpt-4o")


def test_counter_key_names_what_decides_the_counts() -> None:
    assert TokenCounter("gpt-4o").key == counter_for("gpt-4.1-mini").key == ("o200k_base", 1.0)
    assert TokenCounter("gpt-4").key == ("cl100k_base", 1.0)
    assert TokenCounter("claude-sonnet-4-6").key == ("o200k_base", NON_OPENAI_MARGIN)
    assert len({TokenCounter(m).key for m in ("gpt-4o", "gpt-4", "claude-x", "mistral-large")}) == 3
    message = {"role": "user", "content": "same words, same count " * 5}
    assert TokenCounter("claude-x").count(message) == TokenCounter("mistral-large").count(message)
