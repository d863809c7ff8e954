"""A stopped reply's tokens (chatbot/web/stopped.py): estimated from what the visitor saw, priced at the
model's list prices; the browser side (the note, the session total) is in test_browser_first_screen.py."""

from __future__ import annotations

from conftest import make_settings

from chatbot.core.tokens import counter_for
from chatbot.core.upstream import Upstream
from chatbot.web.stopped import answer_text, estimate, split_at_question
from chatbot.web.ui import ChatUI

SHOWN = [
    {"role": "user", "content": [{"type": "text", "text": "Tell me a long story"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "thinking…"}], "metadata": {"title": "Thinking"}},
    {"role": "assistant", "content": [{"type": "text", "text": "Once upon a time, "}]},
    {"role": "assistant", "content": "there was a", "metadata": None},
]


def test_the_partial_answer_is_what_follows_the_last_question() -> None:
    asked, answered = split_at_question(SHOWN)
    assert asked == SHOWN[:1] and answer_text(answered) == "Once upon a time, there was a"
    assert split_at_question("not a chat") == ([], []) and answer_text([None, {"content": 3}]) == ""


def test_a_stopped_reply_is_counted_and_priced(offline_encodings: None) -> None:
    settings = make_settings("http://127.0.0.1:9/v1")
    chat = ChatUI(settings, Upstream(settings))
    usage = estimate(chat, "fast", SHOWN, None)
    model = chat.upstream.resolve("fast")
    assert usage is not None and model is not None
    assert usage.completion_tokens == counter_for(model.id).count_text("Once upon a time, there was a") > 0
    assert usage.prompt_tokens > 0
    assert usage.cost == model.cost(usage.prompt_tokens, usage.completion_tokens) and usage.cost_source == "catalogue"
    assert estimate(chat, "no-such-model", SHOWN, None) is None
