"""A compared turn in a conversation and what each model is sent of it later (chatbot/core/compared_turns.py):
pure functions here; what the upstream receives on every face: test_compare.py and test_compare_api.py."""

from __future__ import annotations

from chatbot.core.compared_turns import NO_REPLY, compared_turn, note, stored_items, thread
from chatbot.core.store import Message

TITLE = "🔀 {model} (compared)"
EARLIER = [{"role": "user", "content": "Earlier"}, {"role": "assistant", "content": "Before."}]


def texts(items: object) -> list[str]:
    assert isinstance(items, list)
    return [m["content"] for m in items if not m.get("metadata")]


def test_each_model_continues_with_its_own_reply_else_the_first_with_text() -> None:
    chat = [*EARLIER, *compared_turn("Q", [("a", ""), ("b", "B says"), ("c", "C says")], TITLE),
            {"role": "user", "content": "Next"}]
    assert texts(thread(chat, "b")) == ["Earlier", "Before.", "Q", "B says", "Next"]
    assert texts(thread(chat, "c")) == ["Earlier", "Before.", "Q", "C says", "Next"]
    assert texts(thread(chat, "a")) == ["Earlier", "Before.", "Q", "B says", "Next"]  # a has no text
    assert texts(thread(chat, "z")) == ["Earlier", "Before.", "Q", "B says", "Next"]  # z was not compared
    assert texts(thread(chat, None)) == ["Earlier", "Before.", "Q", "B says", "Next"]


def test_a_picked_turn_and_a_plain_history_are_left_as_they_are() -> None:
    picked = [*EARLIER, {"role": "user", "content": "Q"}, note("a", "A says", "a"),
              {"role": "assistant", "content": "B says"}]
    assert texts(thread(picked, "a")) == ["Earlier", "Before.", "Q", "B says"]
    assert thread(EARLIER, "a") is EARLIER
    assert thread("not a list", "a") == "not a list"


def test_a_compared_turn_nobody_answered_is_left_out() -> None:
    chat = [*EARLIER, *compared_turn("Q", [("a", ""), ("b", NO_REPLY)], TITLE)]
    assert texts(thread(chat, "a")) == ["Earlier", "Before."]


def test_stored_runs_of_one_message_to_different_models_are_compared_turns() -> None:
    def pair(seq: int, text: str, model: str, reply: str, status: str = "complete") -> list[Message]:
        return [Message(seq, "user", text, "complete", 0.0, model),
                Message(seq + 1, "assistant", reply, status, 0.0, model)]  # type: ignore[arg-type]

    stored = [*pair(1, "Hi", "a", "Hello."), *pair(3, "Hi", "a", "Hello again."),  # same model: two turns
              *pair(5, "Q", "a", "A says"), *pair(7, "Q", "b", "", "interrupted"), *pair(9, "Q", "c", "C says"),
              *pair(11, "Later", "a", "Sure."), *pair(13, "Now", "a", "", "streaming")]
    items = stored_items(stored, 13, 100)
    assert texts(thread(items, "c")) == ["Hi", "Hello.", "Hi", "Hello again.", "Q", "C says", "Later", "Sure."]
    assert texts(thread(items, "b")) == ["Hi", "Hello.", "Hi", "Hello again.", "Q", "A says", "Later", "Sure."]
    assert texts(thread(stored_items(stored, 13, 4), "c")) == ["Q", "C says", "Later", "Sure."]  # the bound


def test_a_chat_of_compared_turns_is_kept_only_when_a_column_answered() -> None:
    from chatbot.web import chats

    assert chats.answered(compared_turn("Q", [("a", ""), ("b", "B says")], TITLE))
    assert not chats.answered(compared_turn("Q", [("a", ""), ("b", "")], TITLE))  # every column failed
