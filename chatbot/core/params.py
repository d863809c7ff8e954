"""A chat's own settings: its system prompt, temperature and reply length, as a visitor chose them.

They come from the browser (a saved chat, an imported file, the settings panel) or an API caller, so they
are untrusted: :meth:`Params.of` rebuilds them with bounded values. :func:`effective` applies the operator's
rules (``CHATBOT_CHAT_SETTINGS``): with ``fixed`` or ``hidden`` a visitor's values are ignored and the
operator's are used. A reply length only ever lowers the reply cap :meth:`Upstream.budget` works out from
``CHATBOT_MAX_TOKENS`` and the model: the spending ceiling holds whatever a visitor asks for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatbot.core.settings import Settings

#: Longest system prompt a visitor may set (characters).
MAX_SYSTEM_CHARS = 8_000
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.0, 2.0
#: The choices of ``CHATBOT_CHAT_SETTINGS``.
MODES = ("edit", "fixed", "hidden")


@dataclass(frozen=True, slots=True)
class Params:
    """One chat's settings; None everywhere means the operator's (the system prompt and temperature of the
    settings, and the reply cap of the model)."""

    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    @classmethod
    def of(cls, raw: object) -> Params:
        """Settings from untrusted input (a mapping with ``system``, ``temperature``, ``max_tokens``): a
        value of the wrong type or out of range is dropped (None), a long prompt is cut."""
        if isinstance(raw, Params):
            return raw
        if not isinstance(raw, Mapping):
            return cls()
        system = raw.get("system")
        system = system.replace("\x00", "").strip()[:MAX_SYSTEM_CHARS] if isinstance(system, str) else ""
        return cls(system or None, _temperature(raw.get("temperature")), _tokens(raw.get("max_tokens")))

    def as_dict(self) -> dict[str, Any]:
        """The JSON form saved with a chat and exported with it (None values left out)."""
        values = {"system": self.system, "temperature": self.temperature, "max_tokens": self.max_tokens}
        return {key: value for key, value in values.items() if value is not None}


def _temperature(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(min(max(float(value), MIN_TEMPERATURE), MAX_TEMPERATURE), 2)


def _tokens(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 1:
        return None
    return int(min(value, 10_000_000))


def editable(settings: Settings) -> bool:
    """Whether visitors may change a chat's settings (``CHATBOT_CHAT_SETTINGS=edit``)."""
    return settings.chat_settings == "edit"


def effective(params: Params | None, settings: Settings) -> Params:
    """What a request is sent with: the visitor's values where the operator lets them choose, else the
    operator's; the system prompt falls back to ``CHATBOT_SYSTEM_PROMPT`` and the temperature to
    ``CHATBOT_TEMPERATURE`` (None: the provider's own default)."""
    given = params if params is not None and editable(settings) else Params()
    return Params(
        given.system or settings.system_prompt or None,
        given.temperature if given.temperature is not None else settings.temperature,
        given.max_tokens,
    )


def reply_cap(cap: int, params: Params) -> int:
    """The reply cap for a request: the chat's reply length, never above ``cap`` (the operator's)."""
    return min(cap, params.max_tokens) if params.max_tokens else cap
