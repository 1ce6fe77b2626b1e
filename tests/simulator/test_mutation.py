"""Live mutation: updates, creates and deletes while a client reads, and the drift they cause."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from worker.simulator import RESOURCES, Simulator

from .conftest import MakeSim
from .helpers import OAuthClient, wait_until

ClientFactory = Callable[[Simulator], OAuthClient]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["id"]: record for record in records}


def snapshot(simulator: Simulator) -> dict[str, dict[str, dict[str, Any]]]:
    return {resource: by_id(simulator.dump(resource)) for resource in RESOURCES}


def test_mutate_updates_creates_and_deletes(make_sim: MakeSim,
                                            make_client: ClientFactory) -> None:
    simulator = make_sim(records=50)
    before = snapshot(simulator)
    started = now_iso()
    done = simulator.mutate(200)
    after = snapshot(simulator)
    assert sum(done.values()) == 200
    assert done["updated"] > done["created"] > done["deleted"] > 0
    assert simulator.counters()["mutations"] == done

    updated = created = deleted = 0
    for resource in RESOURCES:
        old, new = before[resource], after[resource]
        deleted += len(old.keys() - new.keys())
        for record_id in new.keys() - old.keys():
            created += 1
            record = new[record_id]
            assert record["updated_at"] >= record["created_at"] >= started
            # (created, then possibly updated again within this batch)
            assert (record["version"] == 1) == (record["created_at"] == record["updated_at"])
        for record_id in new.keys() & old.keys():
            if new[record_id] != old[record_id]:
                updated += 1
                assert new[record_id]["updated_at"] > old[record_id]["updated_at"]
                assert new[record_id]["updated_at"] >= started
                assert new[record_id]["version"] > old[record_id]["version"]
                assert new[record_id]["created_at"] == old[record_id]["created_at"]
    # A record can be updated twice or created then deleted, so compare loosely.
    assert created <= done["created"] and deleted <= done["deleted"]
    assert 0 < updated <= done["updated"]

    # What the API serves agrees: mutate orders alone until some were deleted and created (the
    # mix is random, and which resource a mutation hits depends on set order across runs).
    orders_before = after["orders"]
    for _ in range(20):
        simulator.mutate(20, resource="orders")
        after = snapshot(simulator)
        if orders_before.keys() - after["orders"].keys() and (
            after["orders"].keys() - orders_before.keys()
        ):
            break
    client = make_client(simulator)
    token = client.login()["access_token"]
    gone = next(iter(orders_before.keys() - after["orders"].keys()))
    assert client.api(f"orders/{gone}", token).status_code == 404
    new_order = next(iter(after["orders"].keys() - orders_before.keys()))
    assert client.api(f"orders/{new_order}", token).json()["order"] == after["orders"][new_order]
    listed = client.api("orders", token, limit=200).json()
    assert listed["total"] == len(after["orders"])
    assert by_id(listed["orders"]) == after["orders"]


def test_mutate_can_target_one_resource(sim: Simulator) -> None:
    before = snapshot(sim)
    done = sim.mutate(60, resource="customers")
    after = snapshot(sim)
    assert done["deleted"] > 0 and done["created"] > 0
    assert len(before["customers"].keys() - after["customers"].keys()) > 0
    assert all(before[name] == after[name] for name in RESOURCES if name != "customers")
    with pytest.raises(ValueError, match="unknown resource"):
        sim.mutate(1, resource="trucks")


def test_created_records_continue_the_full_id_sequence(make_sim: MakeSim) -> None:
    simulator = make_sim(records=0, records_by_resource={"orders": 30})
    simulator.mutate(100)
    numbers = sorted(int(order["full_id"][2:]) for order in simulator.dump("orders"))
    assert numbers[-1] > 30
    assert len(set(numbers)) == len(numbers)


def test_changed_records_move_to_the_end_of_the_order(make_sim: MakeSim) -> None:
    simulator = make_sim(records=0, records_by_resource={"orders": 100})
    before = by_id(simulator.dump("orders"))
    simulator.mutate(30)
    after = simulator.dump("orders")
    changed = [record for record in after if before.get(record["id"]) != record]
    assert changed
    # Edits and creations are stamped "now", after every seeded record.
    assert after[-len(changed):] == changed
    assert [(r["updated_at"], r["id"]) for r in after] == sorted(
        (r["updated_at"], r["id"]) for r in after)


def test_per_request_mutation_makes_offset_paging_drift(make_sim: MakeSim,
                                                        make_client: ClientFactory) -> None:
    simulator = make_sim(records=0, records_by_resource={"orders": 300})
    client = make_client(simulator)
    token = client.login()["access_token"]
    start = now_iso()
    simulator.set_mutation(per_request=5)
    seen: list[dict[str, Any]] = []
    pages = 0
    while True:
        page = client.api("orders", token, limit=50, offset=len(seen)).json()["orders"]
        pages += 1
        seen += page
        if len(page) < 50:
            break
    simulator.set_mutation(per_request=0)
    assert sum(simulator.counters()["mutations"].values()) == 5 * pages

    final = simulator.dump("orders")
    read_twice = [i for i, n in Counter(r["id"] for r in seen).items() if n > 1]
    never_read = {r["id"] for r in final} - {r["id"] for r in seen}
    # Drift: records edited mid-read jump to the end and are read again; deletions shift later
    # records back past the reader's offset, so they are never read.
    assert read_twice or never_read
    assert all(record["updated_at"] >= start for record in final[-3:])


def test_mutation_from_the_config(make_sim: MakeSim, make_client: ClientFactory) -> None:
    simulator = make_sim(mutation_per_request=3)
    client = make_client(simulator)
    token = client.login()["access_token"]
    for _ in range(4):
        assert client.api("orders", token, limit=5).status_code == 200
    assert client.api("orders", token, limit=500).status_code == 400  # not a read: no mutation
    assert client.api("orders", None).status_code == 401
    assert sum(simulator.counters()["mutations"].values()) == 12


def test_per_second_mutation_runs_in_the_background(sim: Simulator) -> None:
    sim.set_mutation(per_second=200.0)
    wait_until(lambda: sum(sim.counters()["mutations"].values()) >= 20)
    sim.set_mutation(per_second=0)
    settled = sum(sim.counters()["mutations"].values())
    time.sleep(0.2)
    assert sum(sim.counters()["mutations"].values()) == settled


def test_pages_stay_consistent_under_heavy_background_mutation(
        make_sim: MakeSim, make_client: ClientFactory) -> None:
    simulator = make_sim(records=200, mutation_per_second=2000.0)
    client = make_client(simulator)
    token = client.login()["access_token"]

    def mutations() -> int:
        return sum(simulator.counters()["mutations"].values())

    def a_pass_read_under_mutation() -> bool:
        """Every page is sorted and without duplicates; True when records changed during the
        pass. On a loaded machine the mutation thread may not get a CPU while the pages are
        read (a pass takes milliseconds), so passes go on until one was read under it."""
        before = mutations()
        for offset in range(0, 400, 40):
            body = client.api("orders", token, limit=40, offset=offset).json()
            keys = [(r["updated_at"], r["id"]) for r in body["orders"]]
            assert keys == sorted(keys) and len(set(keys)) == len(keys)
        return mutations() > before

    wait_until(a_pass_read_under_mutation, timeout=30)


def test_mutation_through_the_admin_endpoints(sim: Simulator) -> None:
    done = requests.post(f"{sim.url}/_admin/mutate", json={"count": 25}, timeout=10).json()
    assert sum(done.values()) == 25
    bills = len(sim.dump("bills"))
    done = requests.post(f"{sim.url}/_admin/mutate", json={"count": 30, "resource": "bills"},
                         timeout=10).json()
    assert len(sim.dump("bills")) == bills + done["created"] - done["deleted"]
    rates = requests.post(f"{sim.url}/_admin/mutation", json={"per_request": 2},
                          timeout=10).json()
    assert rates == {"per_request": 2, "per_second": 0.0}
    assert requests.get(f"{sim.url}/_admin/mutation", timeout=10).json() == rates
    for payload in ({"count": -1}, {"count": "3"}, {}, [1], {"count": 1, "resource": "x"}):
        response = requests.post(f"{sim.url}/_admin/mutate", json=payload, timeout=10)
        assert response.status_code == 400, payload
    response = requests.post(f"{sim.url}/_admin/mutation", json={"per_second": -1}, timeout=10)
    assert response.status_code == 400
