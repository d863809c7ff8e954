"""Advice that fits its reader: a failure whose fix is the operator's (the app's key, its provider's address)
is told differently to a visitor of a public instance, who can set no variable and restart nothing.

- the provider refused a key the visitor pasted: check *your* key (``auth_own_key``);
- on a public instance, the app's key refused: paste your own key (``auth_public_byok``, when the page offers
  the field), else whoever runs the site has to fix it (``auth_operator``);
- on a public instance, the provider unreachable or answering with a web page: the operator's to fix
  (``connection_operator``, ``not_event_stream_operator``).

Anything else, and everything on a private instance (the reader is the operator), is told as it is. The
variants keep their API ``code`` (``auth``, ``connection``, ``not_event_stream``). Pure: no network.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.core.errors import Friendly, render
from chatbot.core.settings import Settings


@dataclass(frozen=True)
class Reader:
    """Who reads a failure: on a ``public`` instance (share link, Space, non-loopback bind) or not, offered
    the own-key field (``byok``), and whether this request went out with the visitor's ``own_key``."""

    public: bool = False
    byok: bool = False
    own_key: bool = False

    @classmethod
    def of(cls, settings: Settings, own_key: object = None) -> Reader:
        """The reader of a page or API served with ``settings``; ``own_key``: the key the request carried."""
        byok = bool(settings.allow_user_key and not settings.demo)
        own = byok and isinstance(own_key, str) and bool(own_key.strip())
        return cls(public=settings.public, byok=byok, own_key=own)


def for_reader(error: Friendly, reader: Reader) -> Friendly:
    """``error`` as ``reader`` should be told it (the same error when its advice already fits)."""
    kind = error.kind
    if kind == "auth" and reader.own_key:
        fitting = "auth_own_key"
    elif kind == "auth" and reader.public:
        fitting = "auth_public_byok" if reader.byok else "auth_operator"
    elif kind in ("connection", "not_event_stream") and reader.public:
        fitting = f"{kind}_operator"
    else:
        return error
    return Friendly(fitting, render(fitting), error.retry_after, error.status, dict(error.params))
