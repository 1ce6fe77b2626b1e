"""What the simulator saw: request, grant, fault and mutation counts.

Tests and benchmarks assert on these (how many token requests did the client make, did reuse
detection fire, how many pages were read), so every count is exact and thread-safe.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any


def _empty() -> dict[str, Any]:
    return {
        "requests": {},  # "GET /api/v1/orders 200" -> n
        "grants": {"authorization_code": 0, "refresh_token": 0},  # successful grants
        "token_requests": 0,  # every POST to /oauth/token
        "token_errors": {},  # OAuth error code -> n
        "reuse_detections": 0,
        "families_revoked": 0,
        "api_requests": 0,  # every request under /api/, whatever its answer
        # Unix time the first of them arrived: the benchmark's time to first request (issue 16)
        "first_api_request_at": None,
        "faults_fired": {},  # fault kind -> n
        "mutations": {"updated": 0, "created": 0, "deleted": 0},
    }


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data = _empty()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._data)

    def reset(self) -> None:
        with self._lock:
            self._data = _empty()

    def add(self, name: str, amount: int = 1) -> None:
        """Add to a top-level count (token_requests, reuse_detections, ...)."""
        with self._lock:
            self._data[name] += amount

    def api_request(self, moment: float) -> None:
        """Count a request under /api/ that arrived at ``moment`` (Unix time)."""
        with self._lock:
            self._data["api_requests"] += 1
            if self._data["first_api_request_at"] is None:
                self._data["first_api_request_at"] = moment

    def add_to(self, name: str, key: str, amount: int = 1) -> None:
        """Add to one entry of a breakdown (requests, grants, token_errors, faults_fired, ...)."""
        with self._lock:
            breakdown = self._data[name]
            breakdown[key] = breakdown.get(key, 0) + amount

    def add_all(self, name: str, amounts: Mapping[str, int]) -> None:
        with self._lock:
            breakdown = self._data[name]
            for key, amount in amounts.items():
                breakdown[key] = breakdown.get(key, 0) + amount
