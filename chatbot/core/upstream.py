"""The provider the app talks to: its client, its model catalogue, the visitors' limits (the guard), and the
requests it is sent, each built within its model's token budget (:meth:`Upstream.prepare`).

A reply is streamed by :func:`chatbot.core.conversation.turn` (:meth:`Upstream.stream` is its events);
the provider's answer is read by :mod:`chatbot.core.provider`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

import openai

from chatbot.core.catalogue import Catalogue, Model, build_catalogue
from chatbot.core.conversation import price, turn
from chatbot.core.errors import Friendly, friendly
from chatbot.core.events import Event
from chatbot.core.history import History, MessageTooLong, clean_text, fit_history, small_history
from chatbot.core.limits import Guard, Ticket, Visitor
from chatbot.core.metrics import Metrics
from chatbot.core.params import Params, effective, reply_cap
from chatbot.core.provider import Prepared, make_client
from chatbot.core.settings import Settings
from chatbot.core.tokens import counter_for, encoding_loaded

__all__ = ["Admission", "Prepared", "Upstream", "make_client", "prepares_inline", "price"]

log = logging.getLogger("switchboard.upstream")

#: A key a visitor pastes: one line of printable ASCII, of a plausible length.
_KEY_RE = re.compile(r"^[\x21-\x7e]{8,512}$")


@dataclass(frozen=True, slots=True)
class Admission:
    """A request admitted by :meth:`Upstream.admit` (``ticket`` is None when no limit applies)."""

    ticket: Ticket | None


class Upstream:
    """Builds requests within each model's token budget and streams the replies as events."""

    def __init__(
        self, settings: Settings, client: openai.AsyncOpenAI | None = None, guard: Guard | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.settings = settings
        # the live catalogue (LiveModels adds the provider's list to it); the settings hold only its spec
        self.catalogue = catalogue if catalogue is not None else build_catalogue(settings.models)
        self.client = client or make_client(settings)
        if guard is None and settings.policy.active:
            guard = Guard(settings.policy, settings.redis_url.get_secret_value() if settings.redis_url else None)
        self.guard = guard
        #: Prompt budgets learned from length refusals (model id -> tokens): a provider whose real window
        #: is smaller than the catalogue says gets trimmed requests from then on.
        self.learned_budget: dict[str, int] = {}
        self.metrics = Metrics()

    def warm_up(self) -> None:
        """Do now, once, what the first request would otherwise wait for: load the tokenisers of the
        offered models (a few hundred ms each). Measured with 200 visitors arriving at a fresh app: a
        quarter of its CPU in the first seconds (py-spy)."""
        try:
            seen: set[str] = set()
            for _, value in self.catalogue.choices():
                model = self.resolve(value)
                counter = counter_for(model.id) if model is not None else None
                if counter is not None and counter.encoding_name not in seen:
                    seen.add(counter.encoding_name)
                    _ = counter.encoding
        except Exception as exc:  # a warm-up is never worth an error: the first request does it instead
            log.warning("warm-up skipped: %s: %s", type(exc).__name__, exc)

    def warm_up_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.warm_up, name="switchboard-warm-up", daemon=True)
        thread.start()
        return thread

    def resolve(self, name: str | None) -> Model | None:
        """The model a dropdown value or API field names; None when it is not offered."""
        if name is None or (isinstance(name, str) and not name.strip()):
            name = self.catalogue.default
        return self.catalogue.resolve(name, allow_any=self.settings.allow_any_model)

    def budget(self, model: Model) -> tuple[int, int]:
        """(prompt budget in tokens, reply cap) for a model."""
        reply = min(self.settings.max_tokens, model.max_output or self.settings.max_tokens)
        reply = min(reply, max(model.context_window // 4, 256))
        prompt = model.context_window - reply
        if self.settings.context_tokens:
            prompt = min(prompt, self.settings.context_tokens)
        return max(prompt, 1), reply

    def prepare(
        self,
        message: str | list[dict],
        history: History | list[dict],
        model_name: str | None,
        params: Params | None = None,
        *,
        prompt_budget: int | None = None,
    ) -> Prepared | Friendly:
        """The messages to send (system prompt, trimmed history, new message), or why nothing is sent.
        ``message`` is text, or OpenAI content parts (text and ``image_url``) when images are attached.
        ``prompt_budget`` lowers the model's prompt budget (a retry after a length refusal). ``params`` are
        the chat's own settings (:func:`chatbot.core.params.effective`: the reply cap is only ever lowered).

        ``history`` is the client's history as a :class:`History` (a list stands for one with the settings'
        caps); it is cleaned, counted and trimmed in one walk from the newest message back, which stops
        where the budget is full (:func:`chatbot.core.history.fit_history`)."""
        model = self.resolve(model_name)
        if model is None:
            return friendly("unknown_model", model=_printable(model_name))
        if isinstance(message, list):
            content: str | list[dict] | Friendly = _checked_parts(message, model, self.settings.max_message_chars)
            if isinstance(content, Friendly):
                return content
        else:
            if not isinstance(message, str) or not message.strip():
                return friendly("empty_message")
            if len(message) > self.settings.max_message_chars:  # before tokenising: a 5 MB paste costs nothing
                limit = self.settings.max_message_chars
                return friendly("input_too_long", chars=len(message), limit=limit)
            content = clean_text(message, self.settings.max_message_chars)
        budget, reply = self.budget(model)
        chosen = effective(params, self.settings)
        reply = reply_cap(reply, chosen)
        if prompt_budget is not None or model.id in self.learned_budget:
            budget = max(1, min(budget, prompt_budget or budget, self.learned_budget.get(model.id, budget)))
        system = [{"role": "system", "content": chosen.system}] if chosen.system else []
        newest = {"role": "user", "content": content}
        counter = counter_for(model.id)
        if not isinstance(history, History):
            history = History.of(history, self.settings)
        try:
            trimmed = fit_history(history, budget, counter.count, system=system, newest=newest)
        except MessageTooLong as exc:
            return friendly("message_too_long", model=model.id, tokens=exc.tokens, budget=exc.budget)
        temperature = None if model.reasoning else chosen.temperature
        return Prepared(model, trimmed.messages, trimmed.dropped_turns, trimmed.tokens, reply, temperature)

    async def admit(self, visitor: Visitor, model_name: str | None) -> Admission | Friendly:
        """Admit a request before anything of it is stored or tokenised (the HTTP API's order): every limit
        is checked, a stream slot taken, the message counted and a full reply's cost reserved; the prompt's
        cost is added by :meth:`stream` once the prompt is counted. Pass the admission to :meth:`stream`,
        or to :meth:`release` when the request goes no further."""
        _, refused = self.user_key(None)
        if refused is not None:
            return refused
        if self.guard is None:
            return Admission(None)
        visitor = replace(visitor, own_key=False)
        if (refused := await self.guard.precheck(visitor)) is not None:
            return refused
        model = self.resolve(model_name)
        reply_cost = price(model, 0, self.budget(model)[1]) if self.has_budget and model is not None else None
        ticket = await self.guard.admit(visitor, reply_cost)
        return ticket if isinstance(ticket, Friendly) else Admission(ticket)

    async def release(self, admission: Admission | None) -> None:
        """Free an admission's stream slot and reservation if :meth:`stream` did not (idempotent)."""
        if admission is not None and admission.ticket is not None and self.guard is not None:
            await self.guard.settle(admission.ticket, 0, 0.0)

    def stream(
        self,
        message: str | list[dict],
        history: History | list[dict],
        model_name: str | None,
        *,
        client: openai.AsyncOpenAI | None = None,
        tick: float = 0.04,
        visitor: Visitor | None = None,
        api_key: str | None = None,
        admission: Admission | None = None,
    ) -> AsyncGenerator[Event, None]:
        """One reply as events: :func:`chatbot.core.conversation.turn` on this upstream, without a state of the
        caller's. Never raises (but for cancellation); always ends with :class:`Done` or :class:`ErrorEvent`.

        ``visitor`` is whom the limits count (every route passes one); ``api_key`` is a visitor's own key,
        used for this request only through a client of its own (never stored, never shared), which also
        exempts the request from the owner's quotas. ``admission`` is one from :meth:`admit` (the limits
        were checked already). Prompt building runs in a worker thread (tokenising a long history is CPU
        work that must not block the event loop). ``history`` is as for :meth:`prepare`."""
        return turn(
            self, message, history, model_name, client=client, tick=tick, visitor=visitor, api_key=api_key,
            admission=admission,
        )

    async def prepared(
        self, message: str | list[dict], history: History | list[dict],
        model_name: str | None, params: Params | None = None, prompt_budget: int | None = None,
    ) -> Prepared | Friendly:
        """:meth:`prepare` on the event loop when it is cheap, else in a worker thread."""
        try:
            if prepares_inline(message, history) and self._counter_ready(model_name):  # a hop costs more
                return self.prepare(message, history, model_name, params, prompt_budget=prompt_budget)
            return await asyncio.to_thread(self.prepare, message, history, model_name, params,
                                           prompt_budget=prompt_budget)
        except Exception:  # pragma: no cover - prepare is total, this is a safety net
            log.exception("could not prepare a request")
            return friendly("internal")

    def _counter_ready(self, model_name: str | None) -> bool:
        """Whether the model's tokeniser is loaded (the first load reads a file: never on the loop)."""
        model = self.resolve(model_name)
        return model is None or encoding_loaded(counter_for(model.id).encoding_name)

    @property
    def has_budget(self) -> bool:
        return self.settings.policy.daily_budget_usd is not None

    def user_key(self, api_key: str | None) -> tuple[str | None, Friendly | None]:
        """The visitor's own key to use (or None), or why the request is refused."""
        settings = self.settings
        key = api_key.strip() if isinstance(api_key, str) and settings.allow_user_key and not settings.demo else ""
        if key and not _KEY_RE.match(key):
            return None, friendly("bad_user_key")
        if not key and settings.require_user_key:
            return None, friendly("need_user_key")
        return key or None, None

    def worst_cost(self, prepared: Prepared) -> float | None:
        """The most this request can cost (prompt plus a full reply), for the spending ceiling."""
        if not self.has_budget:
            return None
        return price(prepared.model, prepared.prompt_tokens, prepared.max_tokens)


def prepares_inline(message: object, history: object) -> bool:
    """Whether :meth:`Upstream.prepare` is cheap enough to run on the event loop: a text message and a
    small history (:func:`chatbot.core.history.small_history`, the message's characters counted in). A worker
    thread costs a hop each way on the path to the first token (more in a burst, when the hops queue
    for the GIL); a long paste, a long history or a model switch (which counts a whole history) does not
    belong on the loop, so those still go to a thread."""
    return isinstance(message, str) and small_history(history, len(message))


#: Most images one request may carry (attachments and the history's, together).
MAX_IMAGES = 20


def _checked_parts(parts: list, model: Model, max_chars: int) -> list[dict] | Friendly:
    """A message given as content parts, checked: text parts cleaned, images only for a vision model and
    only as data or https URLs, some content, not too much."""
    out: list[dict] = []
    chars = images = 0
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            chars += len(part["text"])
            if part["text"].strip():
                out.append({"type": "text", "text": clean_text(part["text"], max_chars)})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url.startswith(("data:image/", "https://")):
                continue
            images += 1
            out.append({"type": "image_url", "image_url": {"url": url}})
    if not out:
        return friendly("empty_message")
    if chars > max_chars:
        return friendly("input_too_long", chars=chars, limit=max_chars)
    if images and not model.vision:
        return friendly("no_vision", model=model.id)
    if images > MAX_IMAGES:
        return friendly("too_many_attachments", limit=MAX_IMAGES)
    return out


def _printable(value: object, limit: int = 60) -> str:
    text = " ".join(str(value).split()) if value is not None else "(none)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


