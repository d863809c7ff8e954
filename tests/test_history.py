"""Tests for chatbot.core.history: trim_history, clean_history and fit_history (the walk the app runs), using the real
tokenizer (no network)."""

from __future__ import annotations

import pickle
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.core.history import (
    History,
    MessageTooLong,
    Trimmed,
    clean_history,
    fit_history,
    small_history,
    trim_history,
)
from chatbot.core.tokens import TokenCounter, counter_for

pytestmark = pytest.mark.usefixtures("offline_encodings")


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
    from chatbot.core.history import clean_history

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


# --- fit_history: the same as clean_history + trim_history, turn after turn ---------------------------

def attachment(path: str, name: str | None) -> dict | None:
    """A deterministic stand-in for the UI's files callback."""
    if path.endswith(".png"):
        return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{path}"}}
    if path.endswith(".txt"):
        return {"type": "text", "text": f"📎 {name or path}\n```\ncontent of {path}\n```"}
    return None


ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "  \n ", "hi", "hello world", "a\x00b\x00c", "\x00\x00 x",
                     "<|endoftext|> and <|im_start|>", "\ud800 lone", "日本語のテキスト", "x" * 90, "word " * 12]),
)
FILE_PART = st.builds(
    lambda kind, nested: {"type": "file", "file": {"path": kind, "orig_name": kind.upper()}} if nested
    else {"path": kind, "orig_name": None},
    st.sampled_from(["a.png", "b.png", "c.txt", "d.exe"]), st.booleans(),
)
CONTENT = st.one_of(
    ODD_TEXT,
    st.lists(st.one_of(st.builds(lambda t: {"type": "text", "text": t}, ODD_TEXT), FILE_PART,
                       st.sampled_from([{"type": "image_url"}, "bare string", 7])), max_size=3),
    st.builds(lambda t: {"type": "text", "text": t}, ODD_TEXT),
    st.none(),
)
ITEM = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": CONTENT},
        optional={"metadata": st.sampled_from([None, {"title": "Thinking"}, {"title": ""}, {"status": "done"}, "x"])},
    ),
    st.fixed_dictionaries({"role": st.sampled_from(["system", "tool", "User", None]), "content": ODD_TEXT}),
    st.sampled_from(["not a message", None, 3, ["user", "hi"]]),
)
ITEMS = st.lists(ITEM, max_size=6)
OPERATION = st.one_of(
    st.tuples(st.just("append"), ITEMS),
    st.tuples(st.just("append"), ITEMS),
    st.tuples(st.just("same")),
    st.tuples(st.just("edit_in_place"), st.integers(0, 30), CONTENT),  # the same list, one message changed
    st.tuples(st.just("truncate"), st.integers(0, 12), ITEMS),  # undo, retry, or an edit then a new reply
    st.tuples(st.just("new"), ITEMS),  # another chat
    st.tuples(st.just("drop_front"), st.integers(0, 4), ITEMS),  # a store returning only the newest messages
)


def apply(history: list, operation: tuple) -> list:
    """The history after one client operation (an in-place edit changes the list it was given)."""
    kind = operation[0]
    if kind == "append":
        return history + list(operation[1])
    if kind == "edit_in_place":
        dicts = [item for item in history if isinstance(item, dict)]
        if dicts:
            dicts[operation[1] % len(dicts)]["content"] = operation[2]
        return history
    if kind == "truncate":
        return history[: operation[1]] + list(operation[2])
    if kind == "new":
        return list(operation[1])
    if kind == "drop_front":
        return history[operation[1]:] + list(operation[2])
    return history


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    caps=st.tuples(st.integers(0, 10), st.integers(0, 220), st.integers(1, 70)),
    max_images=st.integers(0, 3),
    with_files=st.booleans(),
    operations=st.lists(OPERATION, min_size=1, max_size=8),
    budgets=st.lists(st.integers(0, 600), min_size=1, max_size=3),
    model=st.sampled_from(["gpt-4o", "gpt-4", "claude-x"]),
    system=st.booleans(),
)
def test_fit_matches_clean_history_and_trim_history(
    caps: tuple[int, int, int], max_images: int, with_files: bool, operations: list[tuple], budgets: list[int],
    model: str, system: bool,
) -> None:
    """Turn after turn, whatever the client did to its history (appends, in-place edits, undo, another
    chat, a shorter front): the same messages and tokens as the plain functions, the same MessageTooLong,
    and dropped turns never fewer than trim_history's (and none exactly when it drops none)."""
    counter = counter_for(model)
    head = [{"role": "system", "content": "Be brief."}] if system else []
    history: list = []
    for operation in operations:
        history = apply(history, operation)
        files = attachment if with_files else None
        fit = History(history, *caps, files=files, max_images=max_images)
        expected = clean_history(history, *caps, files=files, max_images=max_images)
        assert fit.messages == expected
        for budget in budgets:
            newest = {"role": "user", "content": "and now?"}
            try:
                want: Trimmed | tuple = trim_history([*head, *expected, newest], budget, counter.count)
            except MessageTooLong as exc:
                want = ("too long", exc.tokens, exc.budget)
            try:
                got: Trimmed | tuple = fit_history(fit, budget, counter.count, system=head, newest=newest)
            except MessageTooLong as exc:
                got = ("too long", exc.tokens, exc.budget)
            if isinstance(want, tuple) or isinstance(got, tuple):
                assert got == want
                continue
            assert (got.messages, got.tokens) == (want.messages, want.tokens)
            assert got.messages[-1] is newest
            assert got.dropped_turns >= want.dropped_turns
            assert (got.dropped_turns == 0) == (want.dropped_turns == 0)


def conversation(turns: int, tag: str = "") -> list[dict]:
    """A browser-shaped history: content parts, a thinking note before every reply."""
    out: list[dict] = []
    for i in range(turns):
        out.append({"role": "user", "metadata": None, "content": [{"type": "text", "text": f"{tag} question {i}"}]})
        out.append({"role": "assistant", "metadata": {"title": "Thinking"}, "content": f"hmm {i}"})
        out.append({"role": "assistant", "metadata": None, "content": [{"type": "text", "text": f"{tag} answer {i}"}]})
    return out


def test_a_chat_client_history_gets_the_exact_count_of_turns_left_out() -> None:
    history = conversation(40)
    history[30:30] = [{"role": "assistant", "metadata": {"title": "⚠️ Error"}, "content": "cut"},
                      {"role": "user", "metadata": None, "content": "again"}]  # two user messages in a row
    newest = user("and now?")
    expected = clean_history(history, 5_000, 2_000_000, 200_000)
    for budget in (60, 200, 400, 800, 10_000):
        want = trim_history([SYSTEM, *expected, newest], budget, COUNT)
        got = fit_history(History(history, 5_000, 2_000_000, 200_000), budget, COUNT, system=[SYSTEM], newest=newest)
        assert got == want


def test_the_walk_stops_where_the_budget_is_full() -> None:
    """Only the messages that fit (and the one turn that does not) are cleaned: attachments of older turns
    are never read, whatever the conversation's length."""
    reads: list[str] = []

    def files(path: str, name: str | None) -> dict | None:
        reads.append(path)
        return attachment(path, name)

    history: list[dict] = []
    for i in range(2_000):
        history += [{"role": "user", "content": [f"question {i}", {"path": f"{i}.txt", "orig_name": None}]},
                    bot(f"answer {i}")]
    fitted = fit_history(History(history, 5_000, 2_000_000, 200_000, files=files), 500, COUNT, newest=user("now"))
    assert 0 < len(fitted.messages) < 40 and fitted.dropped_turns > 1_950
    assert len(reads) <= len(fitted.messages)  # the kept turns' files and the first one left out


def test_small_history_is_a_few_text_messages() -> None:
    turn = [user("hi"), bot("hello")]
    assert small_history([]) and small_history(turn * 4)
    assert not small_history(turn * 5)  # more than eight messages
    assert not small_history([{"role": "user", "content": "y" * 4_001}])
    assert not small_history(turn, extra_chars=4_000)  # the new message counts too
    assert not small_history([{"role": "user", "content": [{"type": "file", "file": {"path": "/tmp/a"}}]}])
    assert not small_history([{"role": "user", "content": None}]) and not small_history("junk")
    assert small_history(History(turn, 64, 100_000, 32_000))
    assert not small_history(History(turn * 5, 64, 100_000, 32_000))

