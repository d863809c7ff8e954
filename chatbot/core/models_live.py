"""The live model catalogue: the upstream's own ``GET /models`` list, fetched at start and refreshed in the
background, merged into the :class:`~chatbot.core.catalogue.Catalogue` (offered after the configured aliases).

Nothing here can stop the app from starting: the first fetch runs in a thread that start-up waits for at
most ``CHATBOT_MODELS_TIMEOUT`` seconds; a slow answer still lands later, and a failure (no network, a 401,
a server without the route, a body that is not a model list) is one log line without the key or the body.

Per entry it reads what the providers send: OpenRouter's ``context_length``, ``top_provider``,
``pricing`` (US dollars per token, as strings, turned into dollars per million tokens here),
``architecture.input_modalities`` and ``supported_parameters``; Groq's ``context_window``; vLLM's
``max_model_len``; LM Studio's ``loaded_context_length`` / ``max_context_length``. An entry without facts
borrows the package's own table for its bare id; a model whose window is still unknown gets the one a local
server reports on a route of its own (llama.cpp's ``/props``, LM Studio's ``/api/v0/models``, Ollama's
``/api/show``: :mod:`chatbot.core.windows`), else the configured default.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import replace

import httpx2

from chatbot.core.catalogue import _MODEL_ID_RE, Catalogue, Model, build_catalogue
from chatbot.core.settings import Settings
from chatbot.core.windows import WindowProbe

log = logging.getLogger("switchboard.models")

#: How long the HTTP request itself may take (start-up waits only ``settings.models_timeout`` for it).
REQUEST_TIMEOUT = 30.0
#: Most entries taken from one list (OpenRouter lists ~400; a hostile server could list millions).
MAX_MODELS = 5_000
#: Ids of models that do not chat (embeddings, speech, images, moderation): not offered in a chat app.
_NOT_CHAT = re.compile(
    r"(^|[/:_.-])(text-)?(embed(ding)?s?|tts|whisper|dall-e|moderation|transcribe|davinci|babbage|"
    r"image-(gen|edit)|sora|rerank(er)?)([/:_.-]|\d|$)",
    re.IGNORECASE,
)


def _number(value: object) -> float | None:
    """A finite non-negative number from a JSON number or numeric string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def per_million(per_token: object) -> float | None:
    """OpenRouter's price per token (``"0.000003"``) as dollars per million tokens (3.0). ``"-1"`` (a
    variable price, as for ``openrouter/auto``) and anything unreadable give None."""
    value = _number(per_token)
    return None if value is None else round(value * 1_000_000, 6)


def _mapping(value: object) -> dict:
    """``value`` when it is a JSON object, else an empty one (provider lists hold anything)."""
    return value if isinstance(value, dict) else {}


def _window(entry: dict) -> int | None:
    top = _mapping(entry.get("top_provider"))
    for value in (entry.get("context_length"), entry.get("context_window"), entry.get("max_model_len"),
                  entry.get("loaded_context_length"), entry.get("max_context_length"), top.get("context_length")):
        number = _number(value)
        if number and number >= 256:
            return int(min(number, 100_000_000))
    return None


def parse_entry(entry: object, known: Model | None = None) -> Model | None:
    """One ``/models`` entry as a :class:`Model` (None for an entry that is not a chat model or is
    malformed). ``known`` is what the package's table says about the same id, used for missing facts."""
    if not isinstance(entry, dict):
        return None
    model_id = entry.get("id")
    if not isinstance(model_id, str) or not _MODEL_ID_RE.match(model_id) or _NOT_CHAT.search(model_id):
        return None
    arch = _mapping(entry.get("architecture"))
    outputs = arch.get("output_modalities")
    if isinstance(outputs, list) and outputs and "text" not in outputs:
        return None
    base = replace(known, id=model_id) if known is not None and known.known else Model(model_id, known=False)

    window = _window(entry)
    top = _mapping(entry.get("top_provider"))
    max_output = _number(top.get("max_completion_tokens")) or _number(entry.get("max_completion_tokens"))
    pricing = _mapping(entry.get("pricing"))
    input_price, output_price = per_million(pricing.get("prompt")), per_million(pricing.get("completion"))
    inputs = arch.get("input_modalities")
    modality = arch.get("modality")
    vision = (isinstance(inputs, list) and "image" in inputs) or (
        isinstance(modality, str) and "image" in modality.split("->", 1)[0]
    )
    params = entry.get("supported_parameters")
    reasoning = isinstance(params, list) and ("reasoning" in params or "include_reasoning" in params)

    return replace(
        base,
        context_window=window or base.context_window,
        max_output=int(max_output) if max_output else base.max_output,
        input_price=input_price if input_price is not None and output_price is not None else base.input_price,
        output_price=output_price if input_price is not None and output_price is not None else base.output_price,
        vision=vision or base.vision,
        reasoning=reasoning or base.reasoning,
        known=base.known or window is not None,
    )


def parse_models(payload: object, catalogue: Catalogue | None = None) -> list[Model]:
    """The chat models of a ``GET /models`` body (``{"data": [...]}``, or a bare list). Raises ValueError
    when the body is not a model list at all."""
    entries = payload.get("data") if isinstance(payload, dict) else payload
    if not isinstance(entries, list):
        raise ValueError("not a model list")
    models: dict[str, Model] = {}
    for entry in entries[:MAX_MODELS]:
        model_id = entry.get("id") if isinstance(entry, dict) else None
        # the package's facts only: what the previous list said is fetched afresh (a window may have changed)
        known = catalogue.info(model_id, live=False) if catalogue is not None and isinstance(model_id, str) else None
        model = parse_entry(entry, known)
        if model is not None:
            models.setdefault(model.id, model)
    return list(models.values())


class LiveModels:
    """Fetches the upstream's model list into a catalogue, once at start and then every ``refresh``
    seconds in a daemon thread. ``transport`` is for tests (an ``httpx2`` transport)."""

    def __init__(
        self,
        settings: Settings,
        catalogue: Catalogue | None = None,
        *,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.catalogue = catalogue if catalogue is not None else build_catalogue(settings.models)
        self.transport = transport
        self.fetched = threading.Event()  # set after the first attempt, however it ended
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self.windows = WindowProbe()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "switchboard"}
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def fetch(self) -> list[Model] | None:
        """One ``GET {base_url}/models``; the models, or None when it failed (logged without secrets)."""
        url = f"{self.settings.base_url}/models"
        try:
            with httpx2.Client(
                timeout=httpx2.Timeout(REQUEST_TIMEOUT, connect=self.settings.connect_timeout),
                transport=self.transport,
                follow_redirects=False,
            ) as client:
                response = client.get(url, headers=self._headers())
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
                models = parse_models(response.json(), self.catalogue)
                models = self.windows.fill(client, self.settings.base_url, self._headers(), models)
        except Exception as exc:  # network, HTTP status, JSON, shape: the app carries on without the list
            self._note_failure(exc)
            return None
        self._last_error = None
        return models

    def _note_failure(self, exc: Exception) -> None:
        self.failures += 1
        reason = str(exc) if isinstance(exc, ValueError) and str(exc).startswith(("HTTP ", "not a")) else (
            type(exc).__name__
        )
        if reason != self._last_error:  # one line per kind of failure, not one per refresh
            log.warning("the provider's model list is unavailable (%s); offering the configured models", reason)
        self._last_error = reason

    def refresh(self) -> bool:
        """Fetch now and update the catalogue; True when a list arrived."""
        models = self.fetch()
        if models is not None:
            self.catalogue.add_live(models)
            log.info("the provider lists %d chat models", len(models))
        return models is not None

    def _run(self) -> None:
        try:
            self.refresh()
        finally:
            self.fetched.set()
        interval = self.settings.models_refresh
        while interval > 0 and not self._stop.wait(interval):
            self.refresh()

    def start(self, wait: float | None = None) -> LiveModels:
        """Start the background fetching; wait at most ``wait`` seconds (default: the setting) for the
        first list. Returns at once in demo mode or when the setting turns live models off."""
        if self.settings.demo or not self.settings.live_models or self._thread is not None:
            self.fetched.set()
            return self
        self._thread = threading.Thread(target=self._run, name="switchboard-models", daemon=True)
        self._thread.start()
        self.fetched.wait(self.settings.models_timeout if wait is None else wait)
        return self

    def stop(self) -> None:
        self._stop.set()

