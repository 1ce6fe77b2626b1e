"""Schema drift (issue 14, item 2) end to end: the simulator's API adds a field and changes
another's type in the middle of a run; the run succeeds, loses nothing, and both changes (and
the typed column that stopped parsing) are recorded and listed by status and doctor. On SQLite
and PostgreSQL, on both API profiles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.support import World, make_world, warehouse_rows
from worker.ops.doctor import check_schema_drift, diagnose
from worker.ops.status import build_status
from worker.simulator import SimulatorConfig
from worker.simulator.api import DRIFT_FIELD, drifted
from worker.source.resources import REGISTRY
from worker.sync.run import sync_resource
from worker.warehouse.drift import listed

RESOURCE = "orders"


@pytest.fixture
def world(database_url: str, api_profile: str, tmp_path: Path) -> Iterator[World]:
    config = SimulatorConfig(records=300, profile=api_profile)
    with make_world(database_url, tmp_path, config, SYNC_PAGE_SIZE="40", SYNC_CONCURRENCY="2") as w:
        yield w


def changes(world: World) -> dict[tuple[str, str], str]:
    return {(d.path, d.change): d.detail for d in listed(world.engine) if d.resource == RESOURCE}


def test_a_field_added_and_a_type_changed_mid_run_are_recorded_and_nothing_is_lost(
    world: World,
) -> None:
    resource = REGISTRY[RESOURCE]
    first = sync_resource(world.settings, world.engine, world.store, resource, full=True)
    assert first.ok, first.run.error
    assert changes(world) == {}  # the first run sets the baseline; the registry's paths are there

    # The API changes its records' shape after three more requests: mid-run (8 pages).
    world.sim.change_api(schema_drift_after=3)
    second = sync_resource(world.settings, world.engine, world.store, resource, full=True)
    assert second.ok, second.run.error

    found = changes(world)
    assert (DRIFT_FIELD, "added") in found
    assert found[("full_id", "type")] == "string -> object"
    assert ("full_id.value", "added") in found
    assert found[("full_id", "unparsable")] == "not text: stored NULL in full_id"
    assert not [key for key in found if key[1] == "vanished"]

    # Nothing lost: every record is stored, in the shape it was served in; full_id is NULL
    # exactly where it came as an object (the raw record has it).
    source = {record["id"]: msgspec.json.encode(record) for record in world.dump(RESOURCE)}
    rows = warehouse_rows(world.engine, RESOURCE)
    assert set(rows) == set(source)
    shapes = {"old": 0, "new": 0}
    for record_id, blob in source.items():
        data = rows[record_id]["data"]
        new = msgspec.json.decode(drifted(blob))
        assert data in (msgspec.json.decode(blob), new), record_id
        shapes["new" if data == new else "old"] += 1
        assert (rows[record_id]["full_id"] is None) == (data == new)
    assert shapes["new"] > 0 and shapes["old"] > 0, shapes  # drift really began mid-run
    unparsable = [d for d in listed(world.engine) if d.change == "unparsable"]
    # values stored NULL: a sweep may read a record twice, so at least one per drifted record
    assert unparsable[0].count >= shapes["new"]

    # Listed by status and doctor; doctor warns, and a warning keeps its exit code 0.
    report = build_status(world.settings, world.engine)
    assert {(d["path"], d["change"]) for d in report.as_dict()["drift"]} >= {
        (DRIFT_FIELD, "added"),
        ("full_id", "type"),
    }
    diagnosis = diagnose(world.settings, [check_schema_drift])
    (finding,) = diagnosis.findings
    assert finding.status == "warn"
    assert "full_id" in finding.summary
    assert diagnosis.ok

    # A third run of the same shape notices nothing new: the baseline has learnt it.
    before = {(d.path, d.change): d.count for d in listed(world.engine)}
    third = sync_resource(world.settings, world.engine, world.store, resource, full=True)
    assert third.ok, third.run.error
    after = {(d.path, d.change): d.count for d in listed(world.engine)}
    assert {key for key in after if after[key] != before.get(key)} == {("full_id", "unparsable")}
