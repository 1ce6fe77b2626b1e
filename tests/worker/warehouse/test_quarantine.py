"""worker/warehouse/quarantine.py on SQLite and PostgreSQL: what is kept of a record that could
not be stored (never its secrets), keys, counts, retries and releases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.clock import utcnow
from worker.logs import register_secret
from worker.warehouse import connect, quarantine
from worker.warehouse.rows import Poison
from worker.warehouse.schema import quarantine as table


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    made = connect(warehouse_url)
    yield made
    made.dispose()


def _rows(engine: Engine) -> dict[str, sa.RowMapping]:
    with engine.connect() as conn:
        return {row["key"]: row for row in conn.execute(sa.select(table)).mappings()}


def test_what_is_kept_has_no_secret_and_fits_any_database(engine: Engine) -> None:
    secret = "sk-live-0123456789abcdef"
    register_secret(secret)
    raw = '{"id":"o-1","notes":"call with ' + secret + '","access_token":"abc.def.ghi"}'
    odd = Poison("o-\x002", "before\x00after \udc80", "it holds \\u0000 " + secret)
    anonymous = Poison(None, "[1, 2]", "it is not a JSON object")
    now = utcnow()
    with engine.begin() as conn:
        quarantine.add(conn, "orders", "default", [Poison("o-1", raw, "a test"), odd], now)
        quarantine.add(conn, "orders", "default", [anonymous, anonymous], now)
    kept = _rows(engine)
    assert set(kept) == {"o-1", "o-\\u00002", quarantine.key_of(anonymous)}
    assert kept[quarantine.key_of(anonymous)]["record_id"] is None
    assert quarantine.key_of(anonymous).startswith("sha256:")
    text = " ".join(str(row["raw"]) + str(row["reason"]) for row in kept.values())
    assert secret not in text and "abc.def.ghi" not in text and "[REDACTED]" in text
    assert "before\\u0000after \\udc80" in str(kept["o-\\u00002"]["raw"])
    assert quarantine.counts(engine) == {"orders": 3}
    assert quarantine.counts(engine, "another-org") == {}


def test_seen_again_keeps_first_seen_and_retries_oldest_first(engine: Engine) -> None:
    start = utcnow() - timedelta(hours=2)
    minute = timedelta(minutes=1)
    with engine.begin() as conn:
        for when, record_id, reason in ((0, "a", "one"), (1, "b", "two"), (2, "a", "three")):
            poison = [Poison(record_id, "{}", reason)]
            quarantine.add(conn, "orders", "default", poison, start + when * minute)
    kept = _rows(engine)
    assert kept["a"]["first_seen"] == start and kept["a"]["reason"] == "three"
    assert kept["a"]["last_seen"] == start + 2 * minute
    later = start + 3 * minute
    assert quarantine.ids_to_retry(engine, "orders", "default", later, 10) == ["b", "a"]
    assert quarantine.ids_to_retry(engine, "orders", "default", later, 1) == ["b"]
    assert quarantine.ids_to_retry(engine, "orders", "default", start, 10) == []
    with engine.begin() as conn:
        assert quarantine.release(conn, "orders", "default", ["b", "nope"]) == 1
        assert quarantine.release_unseen(conn, "orders", "default", start + minute) == 0
        assert quarantine.release_unseen(conn, "orders", "default", later) == 1
    assert quarantine.counts(engine) == {}
