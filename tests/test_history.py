"""Tests for chatbot.history.trim_history, using the real tokenizer."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.history import MessageTooLong, Trimmed, trim_history
from chatbot.tokens import TokenCounter, counter_for, ensure_offline_encodings


@pytest.fixture(scope="module", autouse=True)
def offline_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("tiktoken-cache")))
        ensure_offline_encodings()
        yield


COUNT = counter_for("gpt-4o").count
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def bot(text: str) -> dict:
    return {"role": "assistant", "content": text}


def turns(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out += [user(f"question number {i}"), bot(f"answer number {i}")]
    return out


def cost(messages: list[dict]) -> int:
    return sum(COUNT(m) for m in messages) + 3


def test_everything_fits() -> None:
    messages = [SYSTEM, *turns(5), user("and now?")]
    result = trim_history(messages, 100_000, COUNT)
    assert result == Trimmed(messages=messages, dropped_turns=0, tokens=cost(messages))
    assert result.messages is not messages


@pytest.mark.parametrize("system", [[], [SYSTEM]])
def test_empty_history(system: list[dict]) -> None:
    messages = [*system, user("hi")]
    result = trim_history(messages, cost(messages), COUNT)
    assert result == Trimmed(messages=messages, dropped_turns=0, tokens=cost(messages))


def test_no_messages_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least"):
        trim_history([], 1000, COUNT)


def test_drops_oldest_whole_turns_at_exact_boundary() -> None:
    history = turns(6)
    newest = user("latest")
    keep_two = [SYSTEM, *history[-4:], newest]
    result = trim_history([SYSTEM, *history, newest], cost(keep_two), COUNT)
    assert result == Trimmed(messages=keep_two, dropped_turns=4, tokens=cost(keep_two))
    result = trim_history([SYSTEM, *history, newest], cost(keep_two) - 1, COUNT)
    assert result.messages == [SYSTEM, *history[-2:], newest]
    assert result.dropped_turns == 5


def test_turn_with_several_replies_goes_whole() -> None:
    history = [
        user("q1"),
        bot("a1"),
        user("q2"),
        bot("a2 part one"),
        bot("a2 part two"),
        bot("a2 part three"),
    ]
    newest = user("q3")
    budget = cost([SYSTEM, *history[2:], newest])
    result = trim_history([SYSTEM, *history, newest], budget - 1, COUNT)
    assert result.messages == [SYSTEM, newest]
    assert result.dropped_turns == 2
    result = trim_history([SYSTEM, *history, newest], budget, COUNT)
    assert result.messages == [SYSTEM, *history[2:], newest]
    assert result.dropped_turns == 1


def test_leading_assistant_greeting_is_its_own_turn() -> None:
    history = [bot("Hello! How can I help?"), user("q1"), bot("a1")]
    newest = user("q2")
    full = trim_history([SYSTEM, *history, newest], 100_000, COUNT)
    assert full.messages == [SYSTEM, *history, newest]
    assert full.dropped_turns == 0
    budget = cost([SYSTEM, *history, newest]) - 1
    result = trim_history([SYSTEM, *history, newest], budget, COUNT)
    assert result.messages == [SYSTEM, *history[1:], newest]
    assert result.dropped_turns == 1


def test_stops_at_first_turn_that_does_not_fit() -> None:
    small, big, recent = [user("a"), bot("b")], [user("long " * 500), bot("c")], [user("d"), bot("e")]
    newest = user("f")
    budget = cost([*small, *recent, newest])  # the small old turn alone would fit, but not contiguously
    result = trim_history([*small, *big, *recent, newest], budget, COUNT)
    assert result.messages == [*recent, newest]
    assert result.dropped_turns == 2


def test_oversize_message_raises() -> None:
    newest = user("word " * 2_000)
    need = cost([SYSTEM, newest])
    assert trim_history([SYSTEM, *turns(3), newest], need, COUNT).messages == [SYSTEM, newest]
    with pytest.raises(MessageTooLong) as info:
        trim_history([SYSTEM, *turns(3), newest], need - 1, COUNT)
    assert (info.value.tokens, info.value.budget) == (need, need - 1)
    assert isinstance(info.value, ValueError)
    assert str(need) in str(info.value)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.tokens, copy.budget) == (need, need - 1)


def test_only_one_count_per_message() -> None:
    calls: list[dict] = []

    def counting(message: dict) -> int:
        calls.append(message)
        return COUNT(message)

    messages = [SYSTEM, *turns(200), user("latest")]
    trim_history(messages, 10**9, counting)
    assert len(calls) == len(messages)
    calls.clear()
    result = trim_history(messages, cost([SYSTEM, *turns(200)[-6:], user("latest")]), counting)
    assert result.dropped_turns == 197
    assert len(calls) <= 2 + 6 + 2  # stops at the first turn that does not fit


def test_thousand_turn_history_is_cached() -> None:
    tag = uuid.uuid4().hex
    history = []
    for i in range(1_000):
        history += [user(f"{tag} question {i}?"), bot(f"{tag} answer {i}, with some detail.")]
    counter = TokenCounter("gpt-4o")
    first = trim_history([SYSTEM, *history, user(f"{tag} next")], 10**9, counter.count)
    assert counter.misses >= 2_000
    misses = counter.misses
    history += [user(f"{tag} next"), bot(f"{tag} reply")]
    second = trim_history([SYSTEM, *history, user(f"{tag} one more")], 10**9, counter.count)
    assert counter.misses - misses == 2  # only the new reply and the new question were tokenised
    assert second.tokens > first.tokens


# --- property test -----------------------------------------------------------------------------------

TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", "hello world", "<|endoftext|>", "\ud800 lone", "日本語のテキスト", "x" * 300]),
)


Conversation = tuple[list[dict], list[dict], dict, list[dict]]  # head, history, newest, all


@st.composite
def conversations(draw: st.DrawFn) -> Conversation:
    head = [{"role": "system", "content": draw(TEXT)}] if draw(st.booleans()) else []
    history: list[dict] = []
    if draw(st.booleans()):
        history.append(bot(draw(TEXT)))
    for _ in range(draw(st.integers(0, 12))):
        history.append(user(draw(TEXT)))
        history += [bot(draw(TEXT)) for _ in range(draw(st.integers(0, 3)))]
    newest = user(draw(TEXT))
    return head, history, newest, [*head, *history, newest]


def turn_starts(history: list[dict]) -> list[int]:
    return [i for i, m in enumerate(history) if i == 0 or m["role"] == "user"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conv=conversations(), budget=st.integers(0, 1_500), model=st.sampled_from(["gpt-4o", "gpt-4", "claude-x"])
)
def test_trim_properties(conv: Conversation, budget: int, model: str) -> None:
    head, history, newest, messages = conv
    count = counter_for(model).count
    fixed = sum(count(m) for m in [*head, newest]) + 3
    if fixed > budget:
        with pytest.raises(MessageTooLong) as info:
            trim_history(messages, budget, count)
        assert (info.value.tokens, info.value.budget) == (fixed, budget)
        return
    result = trim_history(messages, budget, count)
    assert result.tokens == sum(count(m) for m in result.messages) + 3 <= budget
    assert result.messages[: len(head)] == head
    assert result.messages[-1] is newest
    kept = result.messages[len(head) : -1]
    start = len(history) - len(kept)
    assert kept == history[start:]  # a contiguous suffix ...
    starts = turn_starts(history)
    if kept:
        assert start in starts  # ... of whole turns
    if kept and start > 0:
        assert history[start]["role"] == "user"  # never an orphan reply at the front
    dropped_starts = [s for s in starts if s < start]
    assert result.dropped_turns == len(dropped_starts)
    if dropped_starts:  # greedy: the next older turn would not have fitted
        older = history[dropped_starts[-1] : start]
        assert result.tokens + sum(count(m) for m in older) > budget


def test_clean_history_with_files_keeps_attachments_for_the_ui() -> None:
    from chatbot.history import clean_history

    def files(path: str, name: str | None) -> dict | None:
        if path.endswith(".png"):
            return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{path}"}}
        if path.endswith(".txt"):
            return {"type": "text", "text": f"📎 {name or path}"}
        return None

    def turn(*paths: str, text: str = "look") -> dict:
        parts = [{"type": "file", "file": {"path": p, "orig_name": p.upper()}} for p in paths]
        return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}

    history = [turn("a.png"), {"role": "assistant", "content": "A cat."}, turn("b.png", "c.txt", "x.exe"),
               {"role": "assistant", "content": "A dog."}, turn("d.png", text=""), turn("e.png", text="both?")]
    cleaned = clean_history(history, 100, 100_000, 10_000, files=files, max_images=3)
    assert cleaned[0] == {"role": "user", "content": "look"}  # the oldest image is past max_images
    assert cleaned[2]["content"] == [
        {"type": "text", "text": "look\n\n📎 C.TXT"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,b.png"}},
    ]
    assert cleaned[4] == {"role": "user", "content": [  # two user turns in a row are merged
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,d.png"}},
        {"type": "text", "text": "both?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,e.png"}},
    ]}
    assert clean_history(history, 100, 100_000, 10_000)[2] == {"role": "user", "content": "look"}  # the API's way
