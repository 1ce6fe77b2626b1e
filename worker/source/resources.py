"""The resource registry: what rosesync pulls from Rose Rocket and where it lands.

Each entry is pure data. The API client, the pager and the warehouse all read it, so adding a
resource (or a typed column) is one entry here and no new code: ``rosesync db upgrade`` creates the
table or adds the column, and the next ``rosesync sync --full RESOURCE`` fills it for old rows.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
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
class Child:
    """A list nested in each record (issue 14, item 1), stored one row per element in
    ``rr_<resource>__<name>``: the parent's key, the element's position (0-based, as in the
    JSON), ``columns`` read from the element (paths relative to it) and the element itself."""

    name: str
    path: str  # dotted path of the list in the record: "billing.line_items"
    columns: tuple[Column, ...] = ()


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
    created_field: str = "created_at"  # what `created_start_at` filters on (sweep windows)
    children: tuple[Child, ...] = ()

    @property
    def table(self) -> str:
        return f"rr_{self.name}"

    def child_table(self, child: Child) -> str:
        return f"rr_{self.name}__{child.name}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the API serves a resource, when it is not where the registry says (SYNC_ENDPOINTS):
    the path, the list body's key and GET by id's key; the keys default to the path's last
    segment and that without its plural "s" (``/api/v1/partner_carriers``: ``partner_carriers``,
    ``partner_carrier``)."""

    path: str
    records_key: str | None = None
    item_key: str | None = None

    def applied_to(self, resource: Resource) -> Resource:
        records_key = self.records_key or self.path.rstrip("/").rsplit("/", 1)[-1]
        return replace(
            resource,
            endpoint=self.path.rstrip("/"),
            records_key=records_key,
            item_key=self.item_key or records_key.removesuffix("s"),
        )


def _v1(
    name: str, *columns: Column, path: str | None = None, children: tuple[Child, ...] = ()
) -> Resource:
    return Endpoint(f"/api/v1/{path or name}").applied_to(
        Resource(
            name=name, endpoint="", records_key="", item_key="", columns=columns, children=children
        )
    )


_CREATED = Column("created_at", "created_at", "timestamp")


# What an analyst asks of invoices and bills (issue 14, item 4): currency, the amounts, dates.
_MONEY = (
    Column("currency", "currency"),
    Column("subtotal_amount", "subtotal_amount", "numeric"),
    Column("tax_amount", "tax_amount", "numeric"),
    Column("total_amount", "total_amount", "numeric"),
    Column("balance_due", "balance_due", "numeric"),
    Column("issued_at", "issued_at", "timestamp"),
    Column("due_on", "due_on", "timestamp"),  # a date: midnight UTC
    Column("paid_at", "paid_at", "timestamp"),
)

_LINE_ITEMS = Child(
    "line_items",
    "line_items",
    (
        Column("code", "code"),
        Column("description", "description"),
        Column("amount", "amount", "numeric"),
    ),
)


REGISTRY: dict[str, Resource] = {
    r.name: r
    for r in (
        _v1(
            "customers",
            Column("full_id", "full_id"),
            Column("name", "name"),
            Column("currency", "currency"),
            Column("is_active", "is_active", "boolean"),
            _CREATED,
        ),
        _v1(
            "orders",
            Column("full_id", "full_id"),
            Column("status", "status"),
            Column("customer_id", "customer.id"),
            Column("origin_city", "origin.city"),
            Column("destination_city", "destination.city"),
            Column("currency", "billing.currency"),
            Column("total_amount", "billing.total_amount", "numeric"),
            _CREATED,
            children=(
                Child(
                    "commodities",
                    "commodities",
                    (
                        Column("description", "description"),
                        Column("quantity", "quantity", "integer"),
                        Column("pieces", "pieces", "integer"),
                        Column("weight", "weight", "numeric"),
                        Column("weight_unit", "weight_unit"),
                        Column("freight_class", "freight_class"),
                        Column("is_hazmat", "is_hazmat", "boolean"),
                    ),
                ),
                Child(
                    "reference_numbers",
                    "reference_numbers",
                    (Column("type", "type"), Column("value", "value")),
                ),
            ),
        ),
        _v1(
            "manifests",
            Column("full_id", "full_id"),
            Column("status", "status"),
            Column("carrier_id", "carrier.id"),
            _CREATED,
            children=(
                Child(
                    "stops",
                    "stops",
                    (
                        Column("sequence", "sequence", "integer"),
                        Column("type", "type"),
                        Column("city", "city"),
                        Column("state", "state"),
                        Column("country", "country"),
                        Column("scheduled_at", "scheduled_at", "timestamp"),
                    ),
                ),
            ),
        ),
        # Carriers: public client code lists them at /api/v1/partner_carriers (not /partners).
        _v1(
            "partners",
            Column("full_id", "full_id"),
            Column("name", "name"),
            _CREATED,
            path="partner_carriers",
        ),
        # No public code lists /api/v1/invoices: a tenant whose API lacks it gets the
        # resource reported and skipped (the probe), or moves it with SYNC_ENDPOINTS.
        _v1(
            "invoices",
            Column("full_id", "full_id"),
            Column("status", "status"),
            Column("customer_id", "customer.id"),
            Column("order_id", "order.id"),
            *_MONEY,
            _CREATED,
            children=(_LINE_ITEMS,),
        ),
        _v1(
            "bills",
            Column("full_id", "full_id"),
            Column("status", "status"),
            Column("partner_id", "partner.id"),
            *_MONEY,
            _CREATED,
            children=(_LINE_ITEMS,),
        ),
    )
}


def did_you_mean(name: str) -> str:
    """`` (did you mean orders?)`` for a near miss such as ``order``, else nothing."""
    close = difflib.get_close_matches(name.lower(), REGISTRY, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def configured(endpoints: Mapping[str, Endpoint]) -> dict[str, Resource]:
    """The registry with the operator's endpoint overrides (SYNC_ENDPOINTS) applied."""
    return {
        name: endpoints[name].applied_to(resource) if name in endpoints else resource
        for name, resource in REGISTRY.items()
    }


def select(
    names: Iterable[str], registry: Mapping[str, Resource] = REGISTRY
) -> tuple[Resource, ...]:
    """The resources named, in registry order; an unknown name is a one-line error."""
    wanted = list(names)
    unknown = [n for n in wanted if n not in registry]
    if unknown:
        raise ConfigError(
            f"unknown resource {', '.join(map(repr, unknown))}{did_you_mean(unknown[0])}: "
            f"expected some of {', '.join(registry)} (see `rosesync resources`)"
        )
    return tuple(r for name, r in registry.items() if name in wanted)
