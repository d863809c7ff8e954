"""The limits in force (:class:`Policy`) and how a setting spells them (:func:`parse_limits`). Light on
purpose: the settings build a Policy before the app's heavier modules (Gradio, the SDK) are imported;
:mod:`chatbot.core.limits` enforces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse_many

if TYPE_CHECKING:
    from chatbot.core.limits import Visitor


def parse_limits(raw: str | None, name: str) -> tuple[RateLimitItem, ...]:
    """``"5/minute;50/day"`` → limit items; ``"none"``/``"0"``/empty → no limit. ValueError names the setting."""
    if raw is None or raw.strip().lower() in ("", "none", "off", "0", "unlimited"):
        return ()
    try:
        return tuple(parse_many(raw))
    except ValueError:
        raise ValueError(f"{name}: expected limits like '5/minute;50/day' or 'none', got {raw!r}") from None


@dataclass(frozen=True)
class Policy:
    """The limits in force. See README.md for the defaults on loopback and on a public URL."""

    rate: tuple[RateLimitItem, ...] = ()
    tokens: tuple[RateLimitItem, ...] = ()
    signed_in_rate: tuple[RateLimitItem, ...] = ()
    signed_in_tokens: tuple[RateLimitItem, ...] = ()
    api_rate: tuple[RateLimitItem, ...] = ()  # per HTTP API token (CHATBOT_API_RATE_LIMIT)
    api_tokens: tuple[RateLimitItem, ...] = ()  # per HTTP API token (CHATBOT_API_TOKEN_LIMIT)
    streams_per_visitor: int = 0  # 0: no per-visitor cap
    max_streams: int = 0  # 0: no cap for the whole app
    daily_budget_usd: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.rate or self.tokens or self.api_rate or self.api_tokens or self.streams_per_visitor
                    or self.max_streams or self.daily_budget_usd)

    def rate_for(self, visitor: Visitor) -> tuple[RateLimitItem, ...]:
        """The message limits a visitor is counted against: an API token's, a signed-in user's or a visitor's."""
        return self.api_rate if visitor.api else self.signed_in_rate if visitor.signed_in else self.rate

    def tokens_for(self, visitor: Visitor) -> tuple[RateLimitItem, ...]:
        """The token limits a visitor is counted against (as :meth:`rate_for`)."""
        return self.api_tokens if visitor.api else self.signed_in_tokens if visitor.signed_in else self.tokens
