"""Tests for chatbot.history: trim_history, clean_history and the incremental HistoryWindow, using the real
tokenizer (no network)."""

from __future__ import annotations

import itertools
import pickle
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.history import (
    HistorySnapshot,
    HistoryWindow,
    MessageTooLong,
    Trimmed,
    WindowCache,
    clean_history,
    small_history,
    trim_history,
)
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


# --- HistoryWindow: the same as clean_history + trim_history, turn after turn -----------------------

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
    st.tuples(st.just("append"), ITEMS),
    st.tuples(st.just("same")),
    st.tuples(st.just("edit_last"), ITEM),
    st.tuples(st.just("truncate"), st.integers(0, 12), ITEMS),  # undo, retry, or an edit then a new reply
    st.tuples(st.just("edit_first"), ITEM),
    st.tuples(st.just("new"), ITEMS),  # another chat
    st.tuples(st.just("drop_front"), st.integers(0, 4), ITEMS),  # a store returning only the newest messages
    st.tuples(st.just("files_key"), st.sampled_from(["encode", "skip"])),
)


@st.composite
def window_cases(draw: st.DrawFn) -> dict:
    return {
        "caps": (draw(st.integers(0, 10)), draw(st.integers(0, 220)), draw(st.integers(1, 70))),
        "max_images": draw(st.integers(0, 3)),
        "files": draw(st.booleans()),
        "front_drop": draw(st.booleans()),
        "slack": draw(st.integers(0, 3)),
        "compact_min": draw(st.integers(0, 5)),
        "operations": draw(st.lists(OPERATION, min_size=1, max_size=10)),
        "budgets": draw(st.lists(st.integers(0, 600), min_size=1, max_size=3)),
        "model": draw(st.sampled_from(["gpt-4o", "gpt-4", "claude-x"])),
        "system": draw(st.booleans()),
    }


def apply(history: list, operation: tuple, stamp: Iterator[int], front_drop: bool) -> list:
    """The history after one client operation. Every item gets a serial (as every message a browser holds
    is its own object), so an operation that is not an append always changes the items the window samples."""

    def fresh(items: list) -> list:
        return [{**item, "serial": next(stamp)} if isinstance(item, dict) else [item, next(stamp)] for item in items]

    kind = operation[0]
    if kind == "append":
        return history + fresh(operation[1])
    if kind == "edit_last" and history:
        return history[:-1] + fresh([operation[1]])
    if kind == "truncate":
        return history[: operation[1]] + fresh(operation[2])
    if kind == "edit_first" and history:
        return fresh([operation[1]]) + history[1:]
    if kind == "new":
        return fresh(operation[1])
    if kind == "drop_front" and front_drop:
        return history[operation[1]:] + fresh(operation[2])
    return list(history)


def check_trim(snapshot: HistorySnapshot, expected: list[dict], budget: int, model: str, system: bool) -> None:
    counter = counter_for(model)
    head = [{"role": "system", "content": "Be brief."}] if system else []
    newest = {"role": "user", "content": "and now?"}
    try:
        want: Trimmed | tuple = trim_history([*head, *expected, newest], budget, counter.count)
    except MessageTooLong as exc:
        want = ("too long", exc.tokens, exc.budget)
    try:
        got: Trimmed | tuple = snapshot.trim(budget, counter, system=head, newest=newest)
    except MessageTooLong as exc:
        got = ("too long", exc.tokens, exc.budget)
    assert got == want
    if isinstance(got, Trimmed):
        assert got.messages[-1] is newest


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=window_cases())
def test_window_matches_clean_history_and_trim_history(case: dict) -> None:
    max_messages, max_chars, max_message_chars = case["caps"]
    window = HistoryWindow(max_messages, max_chars, max_message_chars, max_images=case["max_images"],
                           allow_front_drop=case["front_drop"], slack=case["slack"], compact_min=case["compact_min"])
    stamp = itertools.count()
    history: list = []
    files_key = "encode"
    earlier: list[tuple[HistorySnapshot, list[dict]]] = []
    for operation in case["operations"]:
        if operation[0] == "files_key":
            files_key = operation[1]
        history = apply(history, operation, stamp, case["front_drop"])
        files = (lambda p, n, k=files_key: attachment(p, n) if k == "encode" else None) if case["files"] else None
        snapshot = window.sync(history, files=files, files_key=files_key if case["files"] else None)
        expected = clean_history(history, max_messages, max_chars, max_message_chars, files=files,
                                 max_images=case["max_images"])
        assert snapshot.messages == expected
        assert len(snapshot) == len(expected)
        assert snapshot.tokens(counter_for(case["model"])) == sum(counter_for(case["model"]).count(m) for m in expected)
        for budget in case["budgets"]:
            check_trim(snapshot, expected, budget, case["model"], case["system"])
        earlier.append((snapshot, expected))
    for snapshot, expected in earlier:  # later syncs did not change earlier snapshots
        assert snapshot.messages == expected


def conversation(turns: int, tag: str = "") -> list[dict]:
    """A browser-shaped history: content parts, a thinking note before every reply."""
    out: list[dict] = []
    for i in range(turns):
        out.append({"role": "user", "metadata": None, "content": [{"type": "text", "text": f"{tag} question {i}"}]})
        out.append({"role": "assistant", "metadata": {"title": "Thinking"}, "content": f"hmm {i}"})
        out.append({"role": "assistant", "metadata": None, "content": [{"type": "text", "text": f"{tag} answer {i}"}]})
    return out


def test_appends_are_incremental_and_other_changes_rebuild() -> None:
    window = HistoryWindow(5_000, 2_000_000, 200_000)
    history = conversation(40)
    for turns in range(1, 41):
        sent = history[: 3 * turns]
        assert window.sync(sent).messages == clean_history(sent, 5_000, 2_000_000, 200_000)
    assert (window.syncs, window.rebuilds) == (40, 1)  # only the first sync cleaned from scratch
    for changed in (history[:-3],  # undo / retry: shorter
                    [*history[:-1], {"role": "assistant", "content": "edited"}],  # the last message edited
                    [{"role": "user", "content": "another chat"}, *history[1:]],  # another first message
                    conversation(41, tag="other")):  # another chat, longer
        window.sync(history)
        rebuilds = window.rebuilds
        assert window.sync(changed).messages == clean_history(changed, 5_000, 2_000_000, 200_000)
        assert window.rebuilds == rebuilds + 1


def test_each_attachment_is_converted_once() -> None:
    calls: list[str] = []

    def files(path: str, name: str | None) -> dict | None:
        calls.append(path)
        return attachment(path, name)

    window = HistoryWindow(5_000, 2_000_000, 200_000, max_images=2)
    history: list[dict] = []
    for i in range(30):
        history += [{"role": "user", "content": [{"type": "file", "file": {"path": f"/up/{i}.png"}},
                                                 {"type": "file", "file": {"path": f"/up/{i}.txt"}},
                                                 {"type": "text", "text": f"look {i}"}]},
                    {"role": "assistant", "content": f"I see {i}"}]
        snapshot = window.sync(history, files=files, files_key="encode")
        assert snapshot.messages == clean_history(history, 5_000, 2_000_000, 200_000, files=attachment, max_images=2)
    assert len(calls) == 60  # clean_history would have converted 2 + 4 + ... + 60 = 930
    images = [p for m in snapshot.messages if isinstance(m["content"], list) for p in m["content"]
              if p.get("type") == "image_url"]
    assert len(images) == 2  # only the newest max_images images are kept
    rebuilds = window.rebuilds
    window.sync(history, files=files, files_key="skip")  # a model without vision: another conversion
    assert window.rebuilds == rebuilds + 1


def test_a_new_files_key_does_not_rebuild_a_history_without_files() -> None:
    window = HistoryWindow(5_000, 2_000_000, 200_000)
    history = conversation(10)
    window.sync(history, files=attachment, files_key="encode")
    window.sync(history, files=attachment, files_key="skip")
    window.sync(history)
    assert window.rebuilds == 1


def test_each_message_is_tokenised_once_per_count_function() -> None:
    tag = uuid.uuid4().hex
    counter = TokenCounter("gpt-4o")
    window = HistoryWindow(5_000, 2_000_000, 200_000)
    history: list[dict] = []
    question = f"{tag} first question"
    misses = []
    for i in range(200):
        snapshot = window.sync(history)
        result = snapshot.trim(10**9, counter, newest=user(question), system=[SYSTEM])
        assert result == trim_history([SYSTEM, *history, user(question)], 10**9, counter.count)
        misses.append(counter.misses)
        history += [user(question), bot(f"{tag} answer {i}")]
        question = f"{tag} question {i + 1}"
    # per turn: the new question and the previous turn's reply (its question was counted as the newest)
    assert [b - a for a, b in itertools.pairwise(misses)] == [2] * 199


def test_model_changes_between_turns() -> None:
    window = HistoryWindow(5_000, 2_000_000, 200_000)
    history: list[dict] = []
    for i, model in enumerate(["gpt-4o", "claude-x", "gpt-4", "gpt-4o", "mistral-large", "gpt-3.5-turbo"] * 5):
        history += [user(f"question {i} " + "word " * i), bot(f"answer {i}")]
        counter = counter_for(model)
        snapshot = window.sync(history)
        budget = 40 * i + 20
        newest = user("next")
        try:
            want: Trimmed | int = trim_history([SYSTEM, *history, newest], budget, counter.count)
        except MessageTooLong as exc:
            want = exc.tokens
        try:
            got: Trimmed | int = snapshot.trim(budget, counter, system=[SYSTEM], newest=newest)
        except MessageTooLong as exc:
            got = exc.tokens
        assert got == want
    assert window.rebuilds == 1


def test_front_drop_follows_a_store_window_and_lets_old_items_go() -> None:
    window = HistoryWindow(50, 2_000_000, 200_000, allow_front_drop=True, slack=4, compact_min=16)
    stored: list[dict] = []
    for i in range(400):
        stored += [user(f"question {i}"), bot(f"answer {i}")]
        history = stored[-60:]  # the store reads back only the newest 60 messages
        assert window.sync(history).messages == clean_history(history, 50, 2_000_000, 200_000)
        assert len(window._items) <= 2 * 60 + 2  # what dropped out is let go once it outnumbers the rest
    assert window.rebuilds == 1
    plain = HistoryWindow(50, 2_000_000, 200_000)  # without allow_front_drop, a shorter front rebuilds
    plain.sync(stored[-60:])
    plain.sync(stored[-58:])
    assert plain.rebuilds == 2


def test_snapshots_are_not_changed_by_later_syncs() -> None:
    window = HistoryWindow(5_000, 2_000_000, 200_000)
    first = window.sync([user("a"), bot("b")])
    window.sync([user("a"), bot("b"), bot("c")])  # merged into the last message: the window copies its chain
    window.sync([user("x")])  # a rebuild
    assert first.messages == [user("a"), bot("b")]
    assert window.snapshot.messages == [user("x")]
    assert HistoryWindow(5, 5, 5).sync("not a list").messages == []


def test_window_cache_is_bounded() -> None:
    cache = WindowCache(lambda: HistoryWindow(5_000, 2_000_000, 200_000), max_windows=3, max_weight=10**9)
    windows = {key: cache.get(key) for key in "abcd"}
    assert len(cache) == 3 and "a" not in cache
    assert cache.get("b") is windows["b"]  # b is now the most recently used
    cache.get("e")
    assert "c" not in cache and "b" in cache
    heavy = WindowCache(lambda: HistoryWindow(5_000, 2_000_000, 200_000), max_windows=100, max_weight=50_000)
    for key in range(5):
        window = heavy.get(key)
        window.sync([user("x" * 20_000), bot("y")])
        heavy.update(key, window)
    assert len(heavy) == 2  # each holds ~20,000 characters
    heavy.discard(4)
    assert 4 not in heavy and len(heavy) == 1


def test_small_history_is_a_few_text_messages() -> None:
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]
    assert small_history([]) and small_history(turn * 4)
    assert not small_history(turn * 5)  # more than eight messages
    assert not small_history([{"role": "user", "content": "y" * 4_001}])
    assert not small_history(turn, extra_chars=4_000)  # the new message counts too
    assert not small_history([{"role": "user", "content": [{"type": "file", "file": {"path": "/tmp/a"}}]}])
    assert not small_history([{"role": "user", "content": None}]) and not small_history("junk")
    window = HistoryWindow(64, 100_000, 32_000)
    assert small_history(window.sync(turn)) and small_history(window)
    assert not small_history(window.sync(turn * 5))
