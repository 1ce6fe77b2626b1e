"""Helpers shared by the credentials tests (importable by name: spawned child processes need
that, which rules out conftest.py and the test modules themselves)."""

from __future__ import annotations

import queue
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stub:
    """Answers each path from a queue of (status, body, headers); records what it received."""

    url: str = ""
    answers: dict[str, list[tuple[int, object, dict[str, str]]]] = field(default_factory=dict)
    received: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def answer(self, path: str, status: int, body: object, **headers: str) -> None:
        self.answers.setdefault(path, []).append((status, body, headers))

    def forms(self, path: str) -> list[dict[str, str]]:
        return [form for _method, p, form in self.received if p == path]


CLIENT_ID = "rrsync-demo"
CLIENT_SECRET = "rrsync-demo-secret"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def visit(url: str) -> tuple[int, str, str]:
    """What a browser does with ``url``: follow redirects; (status, final URL, body).

    urllib, not requests: urllib3 logs every request line at DEBUG, query (and so the
    authorization code) included, and these tests assert that no log line carries a secret.
    """
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - test URLs
            return response.status, response.geturl(), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.geturl(), exc.read().decode()


def redirect_target(url: str) -> str:
    """The Location a 302 from ``url`` points to (the redirect a --paste operator copies)."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(url, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code in (301, 302, 303, 307):
            return str(exc.headers["Location"])
        raise
    raise AssertionError(f"{url} did not redirect")


def leaked(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets that appear in ``text`` (shortened, so a failing assert does not print them)."""
    return [f"{s[:6]}...({len(s)} chars)" for s in secrets if s and s in text]


def access_token_in_child(env: Mapping[str, str], barrier: Any, results: Any) -> None:
    """One worker process: set up, wait for the others, then ask for a token at the same time."""
    from config.settings import load_settings
    from worker.credentials.store import CredentialStore
    from worker.warehouse import connect

    try:
        settings = load_settings(environ=env, dotenv_path=None)
        store = CredentialStore(settings, connect(settings.database_url))
        barrier.wait(timeout=120)
        results.put(("ok", store.access_token(), store.refreshes))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(("error", f"{type(exc).__name__}: {exc}", 0))


def collect(results: Any, count: int) -> list[tuple[str, str, int]]:
    out = []
    for _ in range(count):
        try:
            out.append(results.get(timeout=180))
        except queue.Empty:  # pragma: no cover - the assertion below reports it
            break
    return out
