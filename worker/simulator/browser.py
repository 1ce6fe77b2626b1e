"""The person at the browser, for the demo: opens the authorization URL and, with the
simulator's auto-consent, follows its redirect to rosesync's loopback listener."""

from __future__ import annotations

import threading
import urllib.request


def visit(url: str) -> None:
    with urllib.request.urlopen(url, timeout=60):  # noqa: S310 - the simulator's own loopback URL
        pass


def visit_soon(url: str) -> None:
    """Visit from a thread: the caller is about to wait for the callback this produces."""
    threading.Thread(target=visit, args=(url,), name="demo-browser", daemon=True).start()
