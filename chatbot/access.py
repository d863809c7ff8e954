"""Access control: the ``CHATBOT_AUTH`` login, with the throttle on wrong passwords that Gradio lacks.

Gradio's own login checks a password as often as it is asked (30 tries in 1.4 s measured here). The
checker below refuses every attempt for a user name, right or wrong, once it has seen too many wrong ones
in a moving window, and the same for all names together, so guessing costs minutes per handful of tries.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Sequence

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from .config import Secret

log = logging.getLogger("switchboard.access")

#: Wrong passwords allowed per user name, and for all names together, before attempts are refused.
PER_USER = parse("5/minute")
OVERALL = parse("30/minute")


class LoginChecker:
    """``checker(username, password) -> bool``, the shape Gradio's ``auth=`` takes."""

    def __init__(self, accounts: Sequence[tuple[str, Secret]]) -> None:
        self._accounts = {user: secret for user, secret in accounts}
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()

    def __call__(self, username: str, password: str) -> bool:
        name = str(username)[:128]
        with self._lock:
            if not (self._limiter.test(PER_USER, "login", name) and self._limiter.test(OVERALL, "login")):
                log.warning("login refused: too many wrong passwords recently")
                return False
            secret = self._accounts.get(name)
            # compare even for an unknown name, so timing does not tell which names exist
            expected = secret.reveal() if secret is not None else "\0" * 32
            ok = hmac.compare_digest(str(password).encode(), expected.encode()) and secret is not None
            if not ok:
                self._limiter.hit(PER_USER, "login", name)
                self._limiter.hit(OVERALL, "login")
            return ok


def login_checker(accounts: Sequence[tuple[str, Secret]]) -> Callable[[str, str], bool] | None:
    """The checker for ``CHATBOT_AUTH``, or None when no account is configured (no login)."""
    return LoginChecker(accounts) if accounts else None
