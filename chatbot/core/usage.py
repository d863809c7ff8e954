"""Cost and usage: the line under each reply, the session's running total, and the context gauge.

Pure functions of the core's :class:`~chatbot.core.upstream.Usage` events and the catalogue, rendered in the
visitor's language. Prices come from the upstream when it reports them (OpenRouter's ``usage.cost``), else
from the catalogue's list prices; a model with no known price says "price unknown", never $0.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from chatbot.core.catalogue import Model
from chatbot.core.i18n import text
from chatbot.core.tokens import counter_for


def format_usd(amount: float) -> str:
    """Dollars with as many decimals as a small amount needs: $1.25, $0.012, $0.00034, $0."""
    if not math.isfinite(amount) or amount <= 0:
        return "$0"
    if amount >= 1:
        return f"${amount:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(amount)))
    return f"${amount:.{decimals}f}"


def reply_line(usage: Any, lang: str = "en", model: str | None = None, simulated: bool = False) -> str:
    """``1,234 tokens in · 56 out · $0.0012`` for one reply (``price unknown`` without a price; no price for
    a ``simulated`` reply), after the ``model`` that wrote it (in code: ```gpt-4o` · 1,234 tokens in …``)."""
    if simulated:
        price = text("simulated", lang)
    else:
        price = format_usd(usage.cost) if usage.cost is not None else text("price_unknown", lang)
    line = text("usage_line", lang, prompt=usage.prompt_tokens, completion=usage.completion_tokens, price=price)
    return f"`{model}` · {line}" if model else line


def reply_detail(usage: Any, model: Model | None, lang: str = "en") -> str:
    """Where the price came from, for the body of the cost note."""
    name = model.id if model is not None else "?"
    if usage.cost_source == "upstream":
        return text("cost_upstream", lang)
    if usage.cost_source == "catalogue" and model is not None and model.input_price is not None:
        return text(
            "cost_catalogue", lang, model=name,
            input=format_usd(model.input_price), output=format_usd(model.output_price or 0.0),
        )
    return text("cost_unknown", lang, model=name)


@dataclass(frozen=True)
class Totals:
    """A session's running total. Kept in a ``gr.State`` as a plain dict (see :meth:`as_dict`)."""

    replies: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0  # replies whose price is unknown (not counted in ``cost``)

    @classmethod
    def from_dict(cls, value: object) -> Totals:
        """Totals from a state value; anything malformed counts as an empty session."""
        if not isinstance(value, Mapping):
            return cls()
        try:
            return cls(
                replies=max(0, int(value.get("replies", 0))),
                prompt_tokens=max(0, int(value.get("prompt_tokens", 0))),
                completion_tokens=max(0, int(value.get("completion_tokens", 0))),
                cost=max(0.0, float(value.get("cost", 0.0))),
                unpriced=max(0, int(value.get("unpriced", 0))),
            )
        except (TypeError, ValueError):
            return cls()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, usage: Any) -> Totals:
        """These totals plus one reply's usage."""
        priced = usage.cost is not None
        return Totals(
            replies=self.replies + 1,
            prompt_tokens=self.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self.completion_tokens + usage.completion_tokens,
            cost=self.cost + (usage.cost if priced else 0.0),
            unpriced=self.unpriced + (0 if priced else 1),
        )

    def render(self, lang: str = "en", simulated: bool = False) -> str:
        """The session line (Markdown); no price for ``simulated`` replies (demo mode)."""
        if not self.replies:
            return text("session_empty", lang)
        if simulated:
            price = text("simulated", lang)
        elif self.unpriced == self.replies:
            price = text("price_unknown", lang)
        else:
            price = format_usd(self.cost)
            if self.unpriced:
                price += text("session_unpriced", lang, count=self.unpriced)
        word = text("reply_one" if self.replies == 1 else "reply_many", lang)
        return text(
            "session_total", lang, replies=self.replies, replies_word=word,
            prompt=self.prompt_tokens, completion=self.completion_tokens, price=price,
        )


@dataclass(frozen=True)
class Gauge:
    """How full a model's prompt budget is with a conversation."""

    used: int
    budget: int
    window: int
    reserve: int
    model: str

    @property
    def fraction(self) -> float:
        return self.used / self.budget if self.budget > 0 else 1.0

    def render(self, lang: str = "en") -> str:
        """A small HTML bar with its caption (no script, every value escaped)."""
        fraction = self.fraction
        percent = f"{fraction:.0%}" if fraction >= 0.01 or self.used == 0 else "<1%"
        caption = text("gauge", lang, used=self.used, budget=self.budget, percent=percent)
        if fraction > 1:
            caption += " · " + text("gauge_over", lang)
        tooltip = text("gauge_model", lang, model=self.model, window=self.window, reserve=self.reserve)
        colour = "#16a34a" if fraction < 0.6 else "#d97706" if fraction <= 1 else "#dc2626"
        width = min(100.0, fraction * 100)
        return (
            f'<div id="context-gauge" data-used="{self.used}" data-budget="{self.budget}" '
            f'title="{html.escape(tooltip)}" style="font-size:0.85em;line-height:1.3">'
            '<div style="height:6px;border-radius:3px;background:rgba(127,127,127,0.25);overflow:hidden">'
            f'<div style="height:100%;width:{width:.1f}%;background:{colour}"></div></div>'
            f"<span>{html.escape(caption)}</span></div>"
        )


def measure(messages: Iterable[Mapping[str, Any]], model: Model, budget: int, reply_reserve: int) -> Gauge:
    """The gauge for ``messages`` (system prompt and cleaned history, as sent upstream) on ``model``.
    Token counts are cached per message (chatbot.core.tokens), so this is cheap after the first count."""
    used = counter_for(model.id).count_messages(messages)
    return Gauge(used=used, budget=budget, window=model.context_window, reserve=reply_reserve, model=model.id)
