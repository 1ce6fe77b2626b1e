"""The resource registry: what rosesync pulls from Rose Rocket and where it lands.

Each entry is pure data. The API client, the pager and the warehouse all read it, so adding a
resource (or a typed column) is one entry here and no new code: ``rosesync db upgrade`` creates the
table or adds the column, and the next ``rosesync sync --full RESOURCE`` fills it for old rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from worker.errors import ConfigError

ColumnType = Literal["text", "integer", "numeric", "boolean", "timestamp"]


@dataclass(frozen=True, slots=True)
class Column:
    """A typed warehouse column extracted from the record at a dotted JSON ``path``."""

    name: str
    path: str
    type: ColumnType = "text"


@dataclass(frozen=True, slots=True)
class Resource:
    """One list endpoint of the v1 API and the ``rr_<name>`` table it fills."""

    name: str
    endpoint: str
    records_key: str  # the list body's key: {"orders": [...]}
    item_key: str  # GET <endpoint>/<id> answers {"order": {...}}
    columns: tuple[Column, ...] = ()
    id_field: str = "id"
    cursor_field: str = "updated_at"
    page_size: int = 200  # the v1 API's maximum

    @property
    def table(self) -> str:
        return f"rr_{self.name}"


def _v1(name: str, item_key: str, *columns: Column) -> Resource:
    return Resource(
        name=name,
        endpoint=f"/api/v1/{name}",
        records_key=name,
        item_key=item_key,
        columns=columns,
    )


_CREATED = Column("created_at", "created_at", "timestamp")

REGISTRY: dict[str, Resource] = {
    r.name: r
    for r in (
        _v1(
            "customers",
            "customer",
            Column("full_id", "full_id"),
            Column("name", "name"),
            Column("currency", "currency"),
            Column("is_active", "is_active", "boolean"),
            _CREATED,
        ),
        _v1(
            "orders",
            "order",
            Column("full_id", "full_id"),
            Column("status", "status"),
            Column("customer_id", "customer.id"),
            Column("origin_city", "origin.city"),
            Column("destination_city", "destination.city"),
            Column("currency", "billing.currency"),
            Column("total_amount", "billing.total_amount", "numeric"),
            _CREATED,
        ),
        _v1(
            "manifests",
            "manifest",
            Column("full_id", "full_id"),
            Column("status", "status"),
            Column("carrier_id", "carrier.id"),
            _CREATED,
        ),
        _v1(
            "partners",
            "partner",
            Column("full_id", "full_id"),
            Column("name", "name"),
            _CREATED,
        ),
        _v1(
            "invoices",
            "invoice",
            Column("full_id", "full_id"),
            Column("status", "status"),
            Column("customer_id", "customer.id"),
            Column("order_id", "order.id"),
            Column("total_amount", "total_amount", "numeric"),
            _CREATED,
        ),
        _v1(
            "bills",
            "bill",
            Column("full_id", "full_id"),
            Column("status", "status"),
            Column("partner_id", "partner.id"),
            Column("total_amount", "total_amount", "numeric"),
            _CREATED,
        ),
    )
}


def select(names: Iterable[str]) -> tuple[Resource, ...]:
    """The resources named, in registry order; an unknown name is a one-line error."""
    wanted = list(names)
    unknown = [n for n in wanted if n not in REGISTRY]
    if unknown:
        raise ConfigError(
            f"unknown resource {', '.join(map(repr, unknown))}: "
            f"expected some of {', '.join(REGISTRY)} (see `rosesync resources`)"
        )
    return tuple(r for name, r in REGISTRY.items() if name in wanted)
