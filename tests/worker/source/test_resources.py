"""worker/source/resources.py: the registry is consistent, and selecting from it validates names."""

from __future__ import annotations

import pytest

from worker.errors import ConfigError
from worker.source.resources import REGISTRY, select
from worker.warehouse.schema import CHILD_RESERVED_COLUMNS, RESERVED_COLUMNS


@pytest.mark.parametrize("name", list(REGISTRY))
def test_entries_are_consistent(name: str) -> None:
    resource = REGISTRY[name]
    assert resource.table == f"rr_{name}"
    names = [c.name for c in resource.columns]
    assert len(names) == len(set(names))
    assert not set(names) & RESERVED_COLUMNS
    paths = [c.path for c in resource.columns]
    # a path may not also be the parent of another (records.py reads each as a leaf)
    for path in paths:
        assert not any(other.startswith(path + ".") for other in paths)
    # the list body's key is the path's last segment, GET by id's key its singular
    assert resource.endpoint.startswith("/api/v1/")
    assert resource.records_key == resource.endpoint.rsplit("/", 1)[-1]
    assert resource.item_key == resource.records_key.removesuffix("s")
    # child tables (issue 14): one per list, their columns clear of the key, position and data
    assert len({c.name for c in resource.children}) == len(resource.children)
    for child in resource.children:
        assert resource.child_table(child) == f"rr_{name}__{child.name}"
        names = [c.name for c in child.columns]
        assert len(names) == len(set(names))
        assert not set(names) & CHILD_RESERVED_COLUMNS
        assert not any(n.startswith("parent_") for n in names)


def test_select_keeps_registry_order_and_names_the_unknown() -> None:
    assert [r.name for r in select(["bills", "orders"])] == ["orders", "bills"]
    with pytest.raises(ConfigError, match="unknown resource 'lorries'"):
        select(["orders", "lorries"])
