"""Run history retention (issue 14, item 6; worker/warehouse/runs.py ``prune_runs``) on SQLite
and PostgreSQL: old runs go, a running run and each resource's latest run stay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.clock import utcnow
from worker.warehouse import connect
from worker.warehouse.runs import prune_runs
from worker.warehouse.schema import runs


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    made = connect(warehouse_url)
    yield made
    made.dispose()


def add_run(engine: Engine, resource: str, days_ago: int, status: str, org: str = "default") -> int:
    """A run as start_run and finish_run leave it, started ``days_ago`` days ago."""
    started = utcnow() - timedelta(days=days_ago)
    with engine.begin() as conn:
        return int(
            conn.execute(
                runs.insert()
                .values(
                    resource=resource,
                    org=org,
                    mode="incremental",
                    status=status,
                    started_at=started,
                    finished_at=None if status == "running" else started,
                    trigger="cli",
                    host="test",
                    pid=1,
                )
                .returning(runs.c.id)
            ).scalar_one()
        )


def remaining(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(runs.c.id)).scalars())


def test_old_runs_are_pruned_but_never_a_running_one_nor_a_resources_latest(
    engine: Engine,
) -> None:
    old_ok = add_run(engine, "orders", 200, "succeeded")
    old_failed = add_run(engine, "orders", 150, "failed")
    stuck = add_run(engine, "orders", 120, "running")
    recent = add_run(engine, "orders", 10, "succeeded")
    only = add_run(engine, "customers", 300, "failed")  # its resource's latest: kept
    other_org_old = add_run(engine, "partners", 200, "skipped", org="acme")
    other_org_latest = add_run(engine, "partners", 199, "succeeded", org="acme")
    # the default org's only partners run: latest per resource *and org*, so kept
    default_org_partners = add_run(engine, "partners", 100, "succeeded")

    assert prune_runs(engine, utcnow() - timedelta(days=90)) == 3
    assert remaining(engine) == {stuck, recent, only, other_org_latest, default_org_partners}
    assert not {old_ok, old_failed, other_org_old} & remaining(engine)
    # pruning again finds nothing more
    assert prune_runs(engine, utcnow() - timedelta(days=90)) == 0
