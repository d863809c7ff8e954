"""The model catalogue: known models, their context windows and prices, and the aliases people pick.

Data-driven in the manner of simonw/llm's ``register(model, aliases=...)``: the table below is the only
place a model's facts live; ``CHATBOT_MODELS`` chooses which of them (or which unknown ids) the dropdown
offers and under what alias.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

#: Context window assumed for a model the catalogue knows nothing about: small on purpose, so that an
#: unknown model is never sent more than it can take. ``CHATBOT_CONTEXT_TOKENS`` overrides it.
DEFAULT_CONTEXT_WINDOW = 8_192


@dataclass(frozen=True)
class Model:
    """What the app knows about one upstream model. Prices are USD per million tokens."""

    id: str
    context_window: int = DEFAULT_CONTEXT_WINDOW
    max_output: int | None = None
    input_price: float | None = None
    output_price: float | None = None
    vision: bool = False
    reasoning: bool = False
    known: bool = True

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """The price of one reply from the catalogue's prices, or None when a price is unknown."""
        if self.input_price is None or self.output_price is None:
            return None
        return (prompt_tokens * self.input_price + completion_tokens * self.output_price) / 1_000_000


#: The facts the package ships. Prices as published by the providers (USD per 1M tokens, input/output).
KNOWN_MODELS: tuple[Model, ...] = (
    Model("gpt-4.1-mini", 1_047_576, 32_768, 0.40, 1.60, vision=True),
    Model("gpt-4.1", 1_047_576, 32_768, 2.00, 8.00, vision=True),
    Model("gpt-4.1-nano", 1_047_576, 32_768, 0.10, 0.40, vision=True),
    Model("gpt-4o", 128_000, 16_384, 2.50, 10.00, vision=True),
    Model("gpt-4o-mini", 128_000, 16_384, 0.15, 0.60, vision=True),
    Model("o3", 200_000, 100_000, 2.00, 8.00, vision=True, reasoning=True),
    Model("o4-mini", 200_000, 100_000, 1.10, 4.40, vision=True, reasoning=True),
    Model("claude-sonnet-4-6", 200_000, 64_000, 3.00, 15.00, vision=True),
    Model("claude-opus-4-6", 200_000, 32_000, 15.00, 75.00, vision=True),
    Model("claude-haiku-4-5", 200_000, 64_000, 1.00, 5.00, vision=True),
    Model("deepseek-chat", 128_000, 8_192, 0.27, 1.10),
    Model("deepseek-reasoner", 128_000, 64_000, 0.55, 2.19, reasoning=True),
    Model("gemini-2.5-flash", 1_048_576, 65_536, 0.30, 2.50, vision=True),
    Model("gemini-2.5-pro", 1_048_576, 65_536, 1.25, 10.00, vision=True, reasoning=True),
)

#: The aliases of the tutorial the product grew from, in the order the dropdown shows them.
DEFAULT_ALIASES: tuple[tuple[str, str], ...] = (
    ("fast", "gpt-4.1-mini"),
    ("smart", "claude-sonnet-4-6"),
    ("reasoning", "o3"),
    ("budget", "deepseek-chat"),
    ("creative", "claude-sonnet-4-6"),
)

_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}$")


def parse_models_spec(spec: str) -> list[tuple[str | None, str]]:
    """Parse ``CHATBOT_MODELS``: comma-separated ``id`` or ``alias=id`` items.

    Raises ValueError with a message fit for one line of start-up output.
    """
    entries: list[tuple[str | None, str]] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        alias: str | None = None
        if "=" in item:
            alias, _, item = (part.strip() for part in item.partition("="))
            if not _ALIAS_RE.match(alias):
                raise ValueError(f"{alias!r} is not a valid alias (letters, digits, '-', '_', '.')")
        if not _MODEL_ID_RE.match(item):
            raise ValueError(f"{item!r} is not a valid model id")
        entries.append((alias, item))
    if not entries:
        raise ValueError("no model listed")
    return entries


class Catalogue:
    """Models by id, aliases to ids, and the order the dropdown offers them in."""

    def __init__(self, known: Iterable[Model] = KNOWN_MODELS) -> None:
        self._facts: dict[str, Model] = {m.id: m for m in known}
        self._offered: list[str] = []  # aliases and ids, in dropdown order
        self._aliases: dict[str, str] = {}
        self._live: dict[str, Model] = {}

    def register(self, model: Model | str, aliases: Iterable[str] = ()) -> Model:
        """Offer a model (by id or with its facts), under zero or more aliases."""
        if isinstance(model, str):
            model = self.info(model)
        if model.known:  # an unknown id keeps no facts, so the live list can supply them later
            self._facts.setdefault(model.id, model)
        names = list(aliases) or [model.id]
        for name in names:
            if name != model.id:
                self._aliases[name] = model.id
            if name not in self._offered:
                self._offered.append(name)
        return model

    def add_live(self, models: Iterable[Model]) -> None:
        """Models the upstream lists itself (``GET /v1/models``): offered after the configured ones."""
        self._live = {m.id: m for m in models}

    @property
    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def resolve(self, name: str | None, *, allow_any: bool = False) -> Model | None:
        """The model an alias or id names, or None when it is not offered (and ``allow_any`` is off)."""
        if not isinstance(name, str):
            return None
        name = name.strip()
        if name in self._aliases:
            return self.info(self._aliases[name])
        if name in self._offered or name in self._live or name in self._aliases.values():
            return self.info(name)
        if allow_any and _MODEL_ID_RE.match(name):
            return self.info(name)
        return None

    def info(self, model_id: str, *, live: bool = True) -> Model:
        """Facts for an id: the table, then the live list (unless ``live`` is off), else conservative defaults."""
        if model_id in self._facts:
            return self._facts[model_id]
        if live and model_id in self._live:
            return self._live[model_id]
        bare = model_id.rsplit("/", 1)[-1]
        if bare in self._facts:
            return replace(self._facts[bare], id=model_id)
        return Model(model_id, known=False)

    @property
    def default(self) -> str:
        return self._offered[0]

    def choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a dropdown: configured aliases and ids first, then the live list."""
        out: list[tuple[str, str]] = []
        for name in self._offered:
            target = self._aliases.get(name)
            out.append((f"{name} · {target}" if target else name, name))
        configured = set(self._offered) | set(self._aliases.values())
        out.extend((live_label(self._live[mid]), mid) for mid in sorted(self._live) if mid not in configured)
        return out

    @property
    def live_count(self) -> int:
        return len(self._live)


def live_label(model: Model) -> str:
    """A dropdown label for a model the upstream lists: its id, context window and price where known."""
    parts = [model.id]
    if model.known:
        window = model.context_window
        parts.append(f"{window // 1_000_000:g}M" if window >= 1_000_000 and not window % 1_000_000
                     else f"{round(window / 1000):,}K" if window >= 1000 else str(window))
    if model.input_price is not None and model.output_price is not None:
        parts.append("free" if not model.input_price and not model.output_price
                     else f"${model.input_price:g}/${model.output_price:g} per 1M")
    if model.vision:
        parts.append("images")
    return " · ".join(parts)


def build_catalogue(spec: str | None) -> Catalogue:
    """The catalogue for ``CHATBOT_MODELS`` (None or empty: the default aliases)."""
    catalogue = Catalogue()
    entries = parse_models_spec(spec) if spec and spec.strip() else list(DEFAULT_ALIASES)
    for alias, model_id in entries:
        catalogue.register(model_id, aliases=[alias] if alias else ())
    return catalogue
