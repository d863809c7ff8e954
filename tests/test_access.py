"""The CHATBOT_AUTH login checker and its throttle on wrong passwords: per name and client address, and
per address, so a guesser slows himself and not the owner (unit level, then through Gradio's real /login
route in the production assembly)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import make_settings
from fake_upstream import FakeUpstream
from pydantic import SecretStr

import app as switchboard
from chatbot.http.access import LoginChecker, basic_credentials, login_checker

ATTACKER, OWNER_HOME, ELSEWHERE = "ip:203.0.113.66", "ip:198.51.100.7", "ip:192.0.2.9"


def accounts() -> list[tuple[str, SecretStr]]:
    return [("alice", SecretStr("alice-right-pass")), ("bob", SecretStr("bob-right-pass"))]


def test_right_and_wrong_passwords() -> None:
    check = LoginChecker([("ana", SecretStr("s3cret-pass")), ("bob", SecretStr("other"))])
    assert check("ana", "s3cret-pass") and check("bob", "other")
    assert not check("ana", "other") and not check("nobody", "s3cret-pass")


def test_wrong_passwords_are_throttled_even_before_the_right_one() -> None:
    check = LoginChecker([("ana", SecretStr("s3cret-pass"))])
    results = [check.check("ana", f"guess-{i}", ATTACKER) for i in range(30)]
    assert not any(results)
    assert not check.check("ana", "s3cret-pass", ATTACKER)  # the guesser's own address waits: 5 a minute


def test_guessing_one_name_does_not_lock_its_owner_out() -> None:
    """Measured before: after 40 wrong passwords for alice, her right one was refused."""
    check = LoginChecker(accounts())
    assert not any(check.check("alice", f"guess-{i}", ATTACKER) for i in range(40))
    assert check.check("alice", "alice-right-pass", OWNER_HOME)
    assert check.check("alice", "alice-right-pass", ELSEWHERE)
    assert not check.check("alice", "alice-right-pass", ATTACKER)


def test_made_up_names_lock_no_one_out() -> None:
    """Measured before: 30 wrong tries over 6 made-up names refused every user's right password for 60 s."""
    check = LoginChecker(accounts())
    assert not any(check.check(f"made-up-{i % 6}", f"guess-{i}", ATTACKER) for i in range(30))
    assert check.check("alice", "alice-right-pass", OWNER_HOME)
    assert check.check("bob", "bob-right-pass", ELSEWHERE)
    # the guesser has used up his address's allowance, whatever name he tries next
    assert not check.check("bob", "bob-right-pass", ATTACKER)


def test_a_right_password_clears_that_names_count_from_that_address() -> None:
    check = LoginChecker(accounts())
    for _ in range(3):  # a forgetful owner: 4 typos, then in; again and again
        assert not any(check.check("alice", f"typo-{i}", OWNER_HOME) for i in range(4))
        assert check.check("alice", "alice-right-pass", OWNER_HOME)


def test_without_an_address_all_attempts_share_one() -> None:
    check = LoginChecker(accounts())
    assert not any(check("alice", f"guess-{i}") for i in range(5))
    assert not check("alice", "alice-right-pass")
    assert check.check("alice", "alice-right-pass", OWNER_HOME)


def test_basic_credentials() -> None:
    assert basic_credentials("Basic YWxpY2U6cDpx") == ("alice", "p:q")
    assert basic_credentials("basic  YWxpY2U6") == ("alice", "")
    for bad in (None, "", "Basic", "Basic !!!", "Basic eA==", "Bearer YWxpY2U6cDpx", "Basic /w=="):
        assert basic_credentials(bad) is None, bad


def test_no_accounts_no_login() -> None:
    assert login_checker(()) is None


# --------------------------------------------------------- through Gradio's /login, production assembly


@pytest.fixture
def login_url(fake: FakeUpstream, tmp_path: Path) -> Iterator[str]:
    """The whole app with two accounts, behind one trusted proxy (so X-Forwarded-For names the client)."""
    settings = make_settings(
        fake.base_url, CHATBOT_AUTH="alice:alice-right-pass,bob:bob-right-pass", CHATBOT_TRUSTED_PROXIES="1",
        CHATBOT_DB=str(tmp_path / f"{uuid.uuid4().hex}.db"),
    )
    with switchboard.serve_in_thread(switchboard.build_server(settings)) as server:
        yield server.url


def login(url: str, user: str, password: str, client: str) -> bool:
    response = httpx.post(url + "login", data={"username": user, "password": password},
                          headers={"X-Forwarded-For": client}, timeout=10)
    assert response.status_code in (200, 400), response.text
    return response.status_code == 200 and response.json() == {"success": True}


def test_login_page_guessing_alice_leaves_alice_in(login_url: str) -> None:
    assert not any(login(login_url, "alice", f"guess-{i}", "203.0.113.66") for i in range(40))
    assert login(login_url, "alice", "alice-right-pass", "198.51.100.7")
    assert not login(login_url, "alice", "alice-right-pass", "203.0.113.66")


def test_login_page_made_up_names_lock_no_one_out(login_url: str) -> None:
    assert not any(login(login_url, f"made-up-{i % 6}", f"guess-{i}", "203.0.113.66") for i in range(30))
    assert login(login_url, "alice", "alice-right-pass", "198.51.100.7")
    assert login(login_url, "bob", "bob-right-pass", "192.0.2.9")
    assert not login(login_url, "bob", "bob-right-pass", "203.0.113.66")
