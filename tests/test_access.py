"""The CHATBOT_AUTH login checker and its throttle on wrong passwords."""

from __future__ import annotations

from chatbot.access import LoginChecker, login_checker
from chatbot.config import Secret


def test_right_and_wrong_passwords() -> None:
    check = LoginChecker([("ana", Secret("s3cret-pass")), ("bob", Secret("other"))])
    assert check("ana", "s3cret-pass") and check("bob", "other")
    assert not check("ana", "other") and not check("nobody", "s3cret-pass")


def test_wrong_passwords_are_throttled_even_before_the_right_one() -> None:
    check = LoginChecker([("ana", Secret("s3cret-pass"))])
    results = [check("ana", f"guess-{i}") for i in range(30)]
    assert not any(results)
    assert not check("ana", "s3cret-pass")  # locked for now: guessing costs a minute per 5 tries


def test_no_accounts_no_login() -> None:
    assert login_checker(()) is None
