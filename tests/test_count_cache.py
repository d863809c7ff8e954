"""The token-count cache on the history's path: fit_history counting through
:class:`chatbot.core.tokens.CountCache` returns exactly what the plain, uncached functions return, whatever
the client did to its history between turns (the strategies are tests/test_history.py's)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_history import CONTENT, FILE_PART, ITEM, ODD_TEXT, apply, attachment, bot, user

from chatbot.core.history import History, MessageTooLong, Trimmed, fit_history, trim_history
from chatbot.core.tokens import CountCache, TokenCounter, counter_for

pytestmark = pytest.mark.usefixtures("offline_encodings")



SMALL_CACHE = CountCache(16, 16 * 2_000)  # shared across examples: stale entries would show, evictions happen
HUGE_TEXT = st.sampled_from(["x" * 40_000, "日本語" * 9_000, "word " * 8_000, "\ud800" * 5_000 + "end"])
PART = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, st.one_of(ODD_TEXT, HUGE_TEXT)),
    st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}), FILE_PART,
)
ANY_CONTENT = st.one_of(CONTENT, HUGE_TEXT, st.lists(PART, max_size=3))
ANY_ITEM = st.one_of(ITEM, st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                                  "content": ANY_CONTENT}))
ANY_ITEMS = st.lists(ANY_ITEM, max_size=6)
EDIT = st.one_of(
    st.tuples(st.just("append"), ANY_ITEMS),
    st.tuples(st.just("same")),
    st.tuples(st.just("edit_in_place"), st.integers(0, 30), ANY_CONTENT),
    st.tuples(st.just("edit_part_in_place"), st.integers(0, 30), st.one_of(ODD_TEXT, HUGE_TEXT)),
    st.tuples(st.just("delete"), st.integers(0, 30)),
    st.tuples(st.just("truncate"), st.integers(0, 12), ANY_ITEMS),
)
NEWEST = st.one_of(ODD_TEXT.filter(lambda t: bool(t.strip())), st.lists(PART.filter(lambda p: "path" not in p
                                                                                    and "file" not in p),
                                                                         min_size=1, max_size=2))


def edit(history: list, operation: tuple) -> list:
    """The history after one client operation; the ``*_in_place`` ones change the objects given."""
    kind = operation[0]
    if kind == "edit_part_in_place":
        parts = [p for item in history if isinstance(item, dict) and isinstance(item.get("content"), list)
                 for p in item["content"] if isinstance(p, dict) and p.get("type") == "text"]
        if parts:
            parts[operation[1] % len(parts)]["text"] = operation[2]
        return history
    if kind == "delete":
        return [item for i, item in enumerate(history) if i != operation[1] % max(len(history), 1)]
    return apply(history, operation)


def outcome(fit: History, budget: int, count: Callable[[dict], int], head: list[dict], newest: dict) -> object:
    try:
        return fit_history(fit, budget, count, system=head, newest=newest)
    except MessageTooLong as exc:
        return ("too long", exc.tokens, exc.budget)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    operations=st.lists(EDIT, min_size=1, max_size=6),
    budgets=st.lists(st.one_of(st.integers(0, 800), st.integers(800, 200_000)), min_size=1, max_size=3),
    model=st.sampled_from(["gpt-4o", "gpt-4", "claude-x"]),
    with_files=st.booleans(),
    small_cache=st.booleans(),
    system=st.booleans(),
    newest_content=NEWEST,
)
def test_cached_counts_give_exactly_what_the_plain_functions_give(
    operations: list[tuple], budgets: list[int], model: str, with_files: bool, small_cache: bool, system: bool,
    newest_content: str | list,
) -> None:
    """Turn after turn, with in-place edits (of a message or of one of its parts), appends and deletions
    between the turns: fit_history counting through the cache (the process's, or a small one that evicts)
    returns exactly what it returns with a counter that tokenises everything (messages, dropped turns,
    tokens, MessageTooLong), and the messages and tokens of clean_history + trim_history with that counter."""
    cached = TokenCounter(model, cache=SMALL_CACHE) if small_cache else counter_for(model)
    plain = TokenCounter(model, cache=None)
    head = [{"role": "system", "content": "Be brief. 簡潔に。"}] if system else []
    files = attachment if with_files else None
    history: list = []
    for operation in operations:
        history = edit(history, operation)
        fit = History(history, 5_000, 2_000_000, 200_000, files=files)
        for budget in budgets:
            newest = {"role": "user", "content": newest_content}
            got = outcome(fit, budget, cached.count, head, newest)
            assert got == outcome(fit, budget, plain.count, head, newest)
            try:
                want = trim_history([*head, *fit.messages, newest], budget, plain.count)
            except MessageTooLong as exc:
                assert got == ("too long", exc.tokens, exc.budget)
                continue
            assert isinstance(got, Trimmed) and (got.messages, got.tokens) == (want.messages, want.tokens)
    assert SMALL_CACHE.weight <= SMALL_CACHE.max_bytes and len(SMALL_CACHE) <= SMALL_CACHE.maxsize


@pytest.mark.parametrize("store", ["browser", "stored"])
def test_an_edited_message_is_counted_again_and_sent_with_its_new_text(store: str) -> None:
    """Message 15 of 40 edited in place, then a turn appended: the fit sends the new text and counts it,
    as an uncached count does (the browser sends new objects each turn; a store hands the same ones)."""
    tag = uuid.uuid4().hex
    history = [(user if i % 2 == 0 else bot)(f"{tag} message {i}") for i in range(40)]
    cached, plain = counter_for("gpt-4o"), TokenCounter("gpt-4o", cache=None)
    newest = user("and now?")
    fit_history(History(history, 5_000, 2_000_000, 200_000), 10**6, cached.count, newest=newest)
    if store == "browser":
        history = [dict(m) for m in history]
    history[15]["content"] = f"{tag} message 15, edited to say something much longer than it said before"
    history += [user(f"{tag} one more"), bot(f"{tag} sure")]
    for budget in (10**6, 400):
        fit = History(history, 5_000, 2_000_000, 200_000)
        got = fit_history(fit, budget, cached.count, newest=newest)
        assert got == fit_history(fit, budget, plain.count, newest=newest)
        assert got.tokens == sum(plain.count(m) for m in got.messages) + 3
    whole = fit_history(History(history, 5_000, 2_000_000, 200_000), 10**6, cached.count, newest=newest)
    assert whole.messages[15]["content"].endswith("than it said before")
