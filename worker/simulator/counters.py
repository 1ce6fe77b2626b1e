"""What the simulator saw: request, grant, fault and mutation counts.

Tests and benchmarks assert on these (how many token requests did the client make, did reuse
detection fire, how many pages were read), so every count is exact and thread-safe.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

# How many past seconds the per-second request counts keep (the peaks are kept for ever), so a
# long-running simulator's counters stay small.
SECONDS_KEPT = 600
#: Who the per-second counts are kept for (issue 15, item 5): the OAuth client and the org of
#: the access token an API request carried ("(none)" for a token without an org).
RATE_SUBJECTS = ("clients", "orgs")
NO_ORG = "(none)"


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
        # API requests a second by the token's client and org: {"clients": {id: {"<epoch
        # second>": n}}, "orgs": {...}}, the last SECONDS_KEPT seconds; peak: the most in one.
        "per_second": {subject: {} for subject in RATE_SUBJECTS},
        "peak_per_second": {subject: {} for subject in RATE_SUBJECTS},
        "org_requests": {},  # org -> API requests with a token of that org
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

    def add_request(self, client_id: str, org_id: str | None, second: int) -> None:
        """Count one API request made with a token of ``client_id`` and ``org_id`` in the epoch
        ``second`` (rate limits belong to the client and the org, issue 15)."""
        org = org_id or NO_ORG
        with self._lock:
            data = self._data
            data["org_requests"][org] = data["org_requests"].get(org, 0) + 1
            for subject, name in zip(RATE_SUBJECTS, (client_id, org), strict=True):
                seconds = data["per_second"][subject].setdefault(name, {})
                key = str(second)
                if key not in seconds:
                    for old in [k for k in seconds if int(k) <= second - SECONDS_KEPT]:
                        del seconds[old]
                count = seconds[key] = seconds.get(key, 0) + 1
                peaks = data["peak_per_second"][subject]
                peaks[name] = max(peaks.get(name, 0), count)
