"""Fit a chat history into a token budget by dropping the oldest whole turns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

REPLY_PRIMING_TOKENS = 3  # same as chatbot.tokens.REPLY_PRIMING_TOKENS


@dataclass(frozen=True)
class Trimmed:
    """Messages to send, how many whole turns were left out, and their total token count."""

    messages: list[dict]
    dropped_turns: int
    tokens: int


class MessageTooLong(ValueError):
    """The system prompt plus the newest message alone exceed the budget."""

    def __init__(self, tokens: int, budget: int) -> None:
        super().__init__(
            f"the newest message (with the system prompt) needs {tokens} tokens, but the budget is {budget}"
        )
        self.tokens = tokens
        self.budget = budget

    def __reduce__(self) -> tuple[type[MessageTooLong], tuple[int, int]]:
        return (type(self), (self.tokens, self.budget))


def trim_history(messages: list[dict], budget: int, count: Callable[[dict], int]) -> Trimmed:
    """Keep system prompt, newest message and as many of the latest whole turns as fit in budget.

    A turn is a user message plus the messages after it up to the next user message; messages before
    the first user message form one turn of their own. Total = sum(count(m)) + 3 <= budget.
    """
    if not messages:
        raise ValueError("messages must contain at least the newest message")
    start = 1 if len(messages) > 1 and messages[0].get("role") == "system" else 0
    head, newest, history = messages[:start], messages[-1], messages[start:-1]

    total = sum(count(m) for m in head) + count(newest) + REPLY_PRIMING_TOKENS
    if total > budget:
        raise MessageTooLong(total, budget)

    keep_from = len(history)
    pending = 0
    for i in range(len(history) - 1, -1, -1):
        pending += count(history[i])
        if i == 0 or history[i].get("role") == "user":  # turn boundary
            if total + pending > budget:
                break
            total += pending
            pending = 0
            keep_from = i

    dropped = history[:keep_from]
    dropped_turns = sum(1 for m in dropped if m.get("role") == "user")
    if dropped and dropped[0].get("role") != "user":
        dropped_turns += 1
    return Trimmed(messages=[*head, *history[keep_from:], newest], dropped_turns=dropped_turns, tokens=total)


def clean_text(text: str, max_chars: int) -> str:
    """Text safe to tokenise and send: no NUL, no lone surrogates, at most ``max_chars`` characters."""
    if len(text) > max_chars:
        text = text[:max_chars]
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _content_text(content: object) -> str:
    """The text of a message's content in any of the shapes Gradio or an API caller may send."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        text = content.get("text") if content.get("type", "text") == "text" else None
        return text if isinstance(text, str) else ""
    if isinstance(content, list | tuple):
        return "\n".join(t for t in (_content_text(part) for part in content) if t)
    return ""


def clean_history(
    history: object, max_messages: int, max_chars: int, max_message_chars: int
) -> list[dict[str, str]]:
    """Rebuild a client-supplied history as plain user/assistant text messages.

    The history comes from the browser (or any API caller) and can be forged: any role, any size, any
    shape. Only ``user`` and ``assistant`` text is kept; app notes and thinking blocks (messages with a
    ``metadata.title``) are dropped; the newest messages are kept within ``max_messages`` and
    ``max_chars`` before anything is tokenised; consecutive messages of one role are merged.
    """
    if not isinstance(history, list | tuple):
        return []
    kept: list[dict[str, str]] = []
    total = 0
    for item in reversed(history):
        if len(kept) >= max_messages or total >= max_chars:
            break
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            continue
        metadata = item.get("metadata")
        if isinstance(metadata, dict) and metadata.get("title"):
            continue
        text = clean_text(_content_text(item.get("content")), min(max_message_chars, max_chars - total))
        if not text.strip():
            continue
        total += len(text)
        if kept and kept[-1]["role"] == item["role"]:
            kept[-1]["content"] = text + "\n\n" + kept[-1]["content"]
        else:
            kept.append({"role": item["role"], "content": text})
    kept.reverse()
    return kept
