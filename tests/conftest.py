"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

try:  # tests/ on sys.path (pytest's default "prepend" import mode, no tests/__init__.py)
    from fake_upstream import FakeUpstream
except ImportError:  # pragma: no cover - tests imported as a package / importlib mode
    from tests.fake_upstream import FakeUpstream


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    """One fake OpenAI-compatible server for the whole session (see tests/fake_upstream.py)."""
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def fake(fake_upstream: FakeUpstream) -> FakeUpstream:
    """The session's fake upstream, reset (empty queue and records, default behaviour) for this test."""
    fake_upstream.reset()
    return fake_upstream


TEST_KEY = "sk-test-switchboard-0123456789abcdef"


def make_settings(base_url: str | None, **env: str):
    """Settings for a test: only the given environment, no .env file, the fake as upstream."""
    from chatbot.config import Settings

    environ = {"OPENAI_API_KEY": TEST_KEY, "CHATBOT_MAX_RETRIES": "0", **env}
    if base_url is not None:
        environ["OPENAI_BASE_URL"] = base_url
    return Settings.load([], environ=environ, env_file=None)


@pytest.fixture
def settings_for(fake: FakeUpstream):
    """``settings_for(**env)``: Settings pointed at the fake upstream with extra environment."""

    def factory(**env: str):
        return make_settings(fake.base_url, **env)

    return factory
