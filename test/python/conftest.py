"""Shared fixtures of the E2B Python SDK suite, run against a real Wrenn control plane and agent.

The TypeScript e2e wrapper (test/e2e/e2b-python.e2e.test.ts) starts both, makes a key for each of
two teams, and runs pytest with the same variables a user sets: E2B_API_URL, E2B_SANDBOX_URL and
E2B_API_KEY; WRENN_OTHER_TEAM_KEY is a key of another team, for the isolation checks.
"""

import os
import time
from importlib.metadata import version
from typing import Callable, Optional, TypeVar
from urllib.parse import urlparse

import httpx
import pytest

E2B_VERSION = "2.63.0"
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    installed = version("e2b")
    if installed != E2B_VERSION:
        raise pytest.UsageError(
            f"the e2b Python SDK is {installed}, these tests were written against {E2B_VERSION}: "
            "re-check docs/e2b-compat.md, then update E2B_VERSION and requirements.txt"
        )
    for name in ("E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY", "WRENN_OTHER_TEAM_KEY"):
        if not os.environ.get(name):
            raise pytest.UsageError(f"{name} is not set: run this suite through test/e2e/e2b-python.e2e.test.ts")


@pytest.fixture(scope="session")
def other_team_key() -> str:
    return os.environ["WRENN_OTHER_TEAM_KEY"]


def eventually(check: Callable[[], T], timeout: float = 15.0, interval: float = 0.2) -> T:
    """Calls `check` until it returns without raising (its result), or re-raises its last error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def by_host(host: str, path: str, method: str = "GET", content: Optional[bytes] = None) -> httpx.Response:
    """A request through the Wrenn server with a Host header, as a wildcard DNS name delivers it."""
    server = urlparse(os.environ["E2B_SANDBOX_URL"])
    url = f"{server.scheme}://{server.netloc}{path}"
    return httpx.request(method, url, headers={"host": host}, content=content, timeout=30)


def pytest_sessionstart(session: pytest.Session) -> None:
    # Wrenn's keys keep Wrenn's own prefix; the SDK sends them as they are (docs/e2b-compat.md).
    assert os.environ["E2B_API_KEY"].startswith("wrn_"), "expected a Wrenn API key (wrn_…)"
