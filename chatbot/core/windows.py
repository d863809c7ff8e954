"""Context windows that local servers report outside their ``GET /v1/models`` list.

An aggregator's list carries each model's window (OpenRouter's ``context_length``, Groq's ``context_window``,
vLLM's ``max_model_len``: read by :mod:`chatbot.core.models_live`). Local servers list bare ids and say the
window elsewhere, at the server's root (the base URL without its ``/v1``):

* llama.cpp's server: ``GET /props``, ``default_generation_settings.n_ctx`` (the window it runs with, which
  ``-c`` sets; its ``/v1/models`` ``meta.n_ctx_train`` is the trained window, larger, and not used);
* LM Studio: ``GET /api/v0/models``, each entry's ``loaded_context_length`` (the window it was loaded with),
  else ``max_context_length``;
* Ollama: ``POST /api/show`` ``{"model": id}`` per model, ``num_ctx`` in its ``parameters``, else
  ``model_info["<architecture>.context_length"]``.

llama-cpp-python's server reports its ``--n_ctx`` nowhere (its ``/v1/models`` entries carry only ``id``,
``object``, ``owned_by`` and ``permissions``): its models keep the configured window (``CHATBOT_CONTEXT_TOKENS``,
else the catalogue's default), and the empty answer it gives to a prompt past its window is handled where the
reply is read.

:class:`WindowProbe` asks only about models whose window is unknown, and remembers which server shape
answered: a provider that has none of these routes is asked once per process, not at every refresh.
Nothing here raises: a route that is missing, slow or malformed gives no window.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import replace

import httpx2

from chatbot.core.catalogue import Model

log = logging.getLogger("switchboard.models")

#: How long one probe request may take (the whole fetch runs in the background thread).
PROBE_TIMEOUT = 5.0
#: At most this many ``/api/show`` requests per refresh (Ollama answers one model per request).
MAX_SHOW = 20
#: Windows outside this range are not believed.
MIN_WINDOW, MAX_WINDOW = 256, 100_000_000
_NUM_CTX = re.compile(r"^\s*num_ctx\s+(\d+)\s*$", re.MULTILINE)


def server_root(base_url: str) -> str:
    """The server's root for a base URL: ``http://host:11434/v1`` gives ``http://host:11434``."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _window(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = int(float(value))
    except (ValueError, OverflowError):
        return None
    return number if MIN_WINDOW <= number <= MAX_WINDOW else None


def from_props(payload: object) -> int | None:
    """llama.cpp's ``/props``: the window of the model it serves."""
    if not isinstance(payload, dict):
        return None
    settings = payload.get("default_generation_settings")
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return _window(n_ctx if n_ctx is not None else payload.get("n_ctx"))


def from_lmstudio(payload: object) -> dict[str, int]:
    """LM Studio's ``/api/v0/models``: id -> window (the loaded one first)."""
    entries = payload.get("data") if isinstance(payload, dict) else None
    windows: dict[str, int] = {}
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            window = _window(entry.get("loaded_context_length")) or _window(entry.get("max_context_length"))
            if window:
                windows[entry["id"]] = window
    return windows


def from_ollama_show(payload: object) -> int | None:
    """Ollama's ``/api/show`` for one model: ``num_ctx`` if the model sets it, else the model's own window."""
    if not isinstance(payload, dict):
        return None
    parameters = payload.get("parameters")
    match = _NUM_CTX.search(parameters) if isinstance(parameters, str) else None
    if match and _window(match.group(1)):
        return _window(match.group(1))
    info = payload.get("model_info")
    if isinstance(info, dict):
        for key, value in info.items():
            if isinstance(key, str) and key.endswith(".context_length") and _window(value):
                return _window(value)
    return None


class WindowProbe:
    """Fills in the windows a listed model lacks, from whichever local server shape answers."""

    SHAPES = ("llamacpp", "lmstudio", "ollama")

    def __init__(self) -> None:
        #: The shape that answered (one of :attr:`SHAPES`), "" once none did, None before the first probe.
        self.shape: str | None = None

    def fill(self, client: httpx2.Client, base_url: str, headers: dict[str, str],
             models: list[Model]) -> list[Model]:
        """``models`` with the windows the server reports for those whose window is unknown."""
        missing = [m.id for m in models if not m.known]
        if not missing or self.shape == "":
            return models
        root = server_root(base_url)
        windows: dict[str, int] = {}
        for shape in (self.shape,) if self.shape else self.SHAPES:
            try:
                windows = self._ask(shape, client, root, headers, missing)
            except Exception as exc:  # network, status, JSON: this server is not of that shape
                log.debug("no %s window route: %s", shape, type(exc).__name__)
                windows = {}
            if windows:
                self.shape = shape
                break
        else:
            if self.shape is None:
                self.shape = ""
        return [replace(m, context_window=windows[m.id], known=True) if m.id in windows else m for m in models]

    def _ask(self, shape: str, client: httpx2.Client, root: str, headers: dict[str, str],
             ids: list[str]) -> dict[str, int]:
        def get(path: str) -> object:
            response = client.get(root + path, headers=headers, timeout=PROBE_TIMEOUT)
            response.raise_for_status()
            return response.json()

        if shape == "llamacpp":
            window = from_props(get("/props"))
            return dict.fromkeys(ids, window) if window else {}
        if shape == "lmstudio":
            listed = from_lmstudio(get("/api/v0/models"))
            return {i: listed[i] for i in ids if i in listed}
        return _each(ids[:MAX_SHOW], lambda model_id: from_ollama_show(_post(client, root + "/api/show", headers,
                                                                             {"model": model_id})))


def _post(client: httpx2.Client, url: str, headers: dict[str, str], body: dict) -> object:
    response = client.post(url, headers=headers, json=body, timeout=PROBE_TIMEOUT)
    response.raise_for_status()
    return response.json()


def _each(ids: Iterable[str], ask: Callable[[str], int | None]) -> dict[str, int]:
    """Ask per id; the first failure (the route is missing) ends the probing."""
    windows: dict[str, int] = {}
    for model_id in ids:
        window = ask(model_id)
        if window:
            windows[model_id] = window
    return windows
