"""Table definitions: the worker's own tables, one ``rr_<resource>`` table per resource and one
``rr_<resource>__<child>`` table per nested list the registry declares.

The worker's tables are versioned by Alembic (``migrations/``); a test checks that the migrations
and these definitions agree. Resource and child tables come from the registry, so ``rosesync db
upgrade`` creates them and adds typed columns as the registry grows (see ``migrate.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from worker.source.resources import REGISTRY, Child, ColumnType, Resource


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in Python; ``timestamptz`` on PostgreSQL, fixed-width text on SQLite.

    SQLite has no timestamp type: SQLAlchemy stores ``YYYY-MM-DD HH:MM:SS.ffffff``, always with
    microseconds, so string order is time order and SQL comparisons (the upsert's "never
    overwrite a newer version") stay correct. Naive datetimes are refused rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: rosesync stores UTC-aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Json(sa.TypeDecorator[Any]):
    """JSON; ``jsonb`` on PostgreSQL.

    Rather than ``sa.JSON().with_variant(JSONB(), "postgresql")``, which imports SQLAlchemy's
    PostgreSQL dialect (and its asyncpg driver module, and asyncio) on every command, SQLite and
    DuckDB ones included: about 20 ms of each start-up (issue 16, target 2)."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return super().load_dialect_impl(dialect)


class DecimalText(sa.TypeDecorator[Decimal]):
    """An exact amount on SQLite, which has no decimal type: the decimal's text, read back as a
    ``Decimal`` (issue 14, item 4). A column declared TEXT keeps the text as written, where
    REAL kept a binary float (0.1 + 0.2). SQLite's own arithmetic on it (``sum()``) is still
    floating point: README, "Money"."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else format(Decimal(value), "f")

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


def sqlite_timestamp(value: datetime) -> str:
    """A UTC datetime in the text form :class:`UTCDateTime` uses on SQLite (for bulk paths)."""
    # isoformat, not strftime: glibc's %Y does not pad years before 1000 (found by the
    # property test, issue 13), which breaks both the fixed width and reading the value back.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


metadata = sa.MetaData()

credentials = sa.Table(
    "rrsync_credentials",
    metadata,
    sa.Column("org", sa.String(200), primary_key=True, comment="ROSEROCKET_ORG_ID or 'default'"),
    sa.Column("access_token", sa.Text, nullable=False, comment="Fernet-encrypted"),
    sa.Column("refresh_token", sa.Text, nullable=False, comment="Fernet-encrypted"),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("obtained_at", UTCDateTime, nullable=False),
    sa.Column("refreshed_at", UTCDateTime),
    sa.Column("state", sa.String(32), nullable=False, comment="ok | reauth_required"),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column(
        "refresh_failures",
        sa.Integer,
        nullable=False,
        server_default="0",
        comment="failed refresh cycles in a row",
    ),
    sa.Column(
        "refresh_blocked_until",
        UTCDateTime,
        comment="no token request from any process before this",
    ),
    sa.Column("paused_at", UTCDateTime, comment="set: the org is not synced (rosesync orgs pause)"),
)

state = sa.Table(
    "rrsync_state",
    metadata,
    sa.Column("resource", sa.String(100), primary_key=True),
    sa.Column("org", sa.String(200), primary_key=True),
    sa.Column("cursor", UTCDateTime, comment="greatest updated_at committed, capped"),
    sa.Column("last_full_sync_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column(
        "created_cursor",
        UTCDateTime,
        comment="sweep: every record created before it is stored (windows between sweeps)",
    ),
)

runs = sa.Table(
    "rrsync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("resource", sa.String(100), nullable=False),
    sa.Column("org", sa.String(200), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False, comment="incremental | full"),
    sa.Column(
        "status",
        sa.String(16),
        nullable=False,
        comment="running | succeeded | failed | skipped | interrupted | abandoned",
    ),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("heartbeat_at", UTCDateTime),
    sa.Column("pages", sa.Integer, nullable=False, server_default="0"),
    sa.Column("records", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unauthorized", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rate_limited", sa.Integer, nullable=False, server_default="0"),
    sa.Column("token_refreshes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cursor_before", UTCDateTime),
    sa.Column("cursor_after", UTCDateTime),
    sa.Column("error", sa.Text),
    sa.Column("trigger", sa.String(16), nullable=False, comment="cli | celery"),
    sa.Column("task_id", sa.String(64)),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
)
sa.Index("ix_rrsync_runs_resource_started", runs.c.resource, runs.c.org, runs.c.started_at)

leases = sa.Table(
    "rrsync_leases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("detail", sa.Text, comment="JSON the holder publishes: its name, its schedule"),
)

capabilities = sa.Table(
    "rrsync_capabilities",
    metadata,
    sa.Column("resource", sa.String(100), primary_key=True),
    sa.Column("org", sa.String(200), primary_key=True),
    sa.Column("endpoint", sa.String(500), nullable=False, comment="the path probed"),
    sa.Column("probed_at", UTCDateTime, nullable=False),
    sa.Column("exists", sa.Boolean, nullable=False, comment="false: the list answered 404"),
    sa.Column("page_size", sa.Integer),
    sa.Column("total", sa.Boolean, comment="list bodies carry total"),
    sa.Column("updated_filters", sa.Boolean),
    sa.Column("updated_order", sa.Boolean),
    sa.Column("start_inclusive", sa.Boolean),
    sa.Column("end_inclusive", sa.Boolean),
    sa.Column("created_filter", sa.Boolean),
    sa.Column("by_id", sa.Boolean),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("message", sa.Text),
    comment="what each resource's endpoint was probed to do (worker/source/probe.py)",
)

alerts = sa.Table(
    "rrsync_alerts",
    metadata,
    sa.Column("subject", sa.String(300), primary_key=True, comment="credential:org | sync:org:res"),
    sa.Column("state", sa.String(16), nullable=False, comment="ok | alerting"),
    sa.Column("changed_at", UTCDateTime, nullable=False),
    sa.Column("message", sa.Text, comment="the last notification sent, redacted"),
)


quarantine = sa.Table(
    "rrsync_quarantine",
    metadata,
    sa.Column("resource", sa.String(100), primary_key=True),
    sa.Column("org", sa.String(200), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True, comment="the record's id, else sha256: of raw"),
    sa.Column("record_id", sa.Text, comment="null when the record has no usable id"),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.Text, nullable=False, comment="as received, secrets redacted"),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
)

# Schema drift (issue 14, item 2; warehouse/drift.py): the fields each resource's records are
# known to have, and every change to them a run noticed. Paths and types only, never a value.
fields = sa.Table(
    "rrsync_fields",
    metadata,
    sa.Column("resource", sa.String(100), primary_key=True),
    sa.Column("org", sa.String(200), primary_key=True),
    sa.Column("path", sa.Text, primary_key=True, comment="billing.total_amount, stops[].city"),
    sa.Column("types", sa.Text, nullable=False, comment="JSON types seen: number,string"),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
)

drift = sa.Table(
    "rrsync_drift",
    metadata,
    sa.Column("resource", sa.String(100), primary_key=True),
    sa.Column("org", sa.String(200), primary_key=True),
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column(
        "change", sa.String(16), primary_key=True, comment="added | vanished | type | unparsable"
    ),
    sa.Column("detail", sa.Text, nullable=False, comment="types before and after, or column"),
    sa.Column("count", sa.BigInteger, nullable=False, comment="runs that saw it; NULLed values"),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("run_id", sa.Integer, comment="the last run that saw it"),
)

OWN_TABLES = (credentials, state, runs, leases, capabilities, alerts, quarantine, fields, drift)

_SQL_TYPES: dict[ColumnType, sa.types.TypeEngine[Any]] = {
    "text": sa.Text(),
    "integer": sa.BigInteger(),
    "numeric": sa.Numeric(18, 4).with_variant(DecimalText(), "sqlite"),
    "boolean": sa.Boolean(),
    "timestamp": UTCDateTime(),
}

RESERVED_COLUMNS = frozenset({"org", "id", "data", "updated_at", "synced_at", "deleted_at"})

#: The longest org name (the credentials' primary key, and every resource row's org).
ORG_LENGTH = 200


def org_updated_index(table: str) -> str:
    return f"ix_{table}_org_updated_at"


def _resource_table(resource: Resource) -> sa.Table:
    # The org leads the primary key: one warehouse holds many organizations, whose records may
    # share ids (issue 15, item 2), and every query of a run filters on its org. The column
    # comes last, where the migration of an existing table adds it (0008_orgs).
    return sa.Table(
        resource.table,
        metadata,
        sa.Column("id", sa.Text, comment="the API's id"),
        *(
            sa.Column(c.name, _SQL_TYPES[c.type], comment=f"data.{c.path}")
            for c in resource.columns
        ),
        sa.Column("data", Json(), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("synced_at", UTCDateTime, nullable=False, comment="last time a sync saw it"),
        sa.Column("deleted_at", UTCDateTime, comment="set when a full sync found it gone"),
        sa.Column("org", sa.String(ORG_LENGTH), nullable=False, comment="the credential's org"),
        sa.PrimaryKeyConstraint("org", "id"),
        # Every range query of a run (reconcile's counts and medians, keyset's positions) is
        # "this org, updated_at in a range": with an index on updated_at alone, SQLite chose the
        # primary key's org prefix and scanned the whole org for each count (an incremental run
        # after 500 changes among 50,000 orders took 407 s instead of seconds).
        sa.Index(org_updated_index(resource.table), "org", "updated_at"),
    )


resource_tables: dict[str, sa.Table] = {name: _resource_table(r) for name, r in REGISTRY.items()}

CHILD_RESERVED_COLUMNS = frozenset({"position", "data"})


def parent_key(parent: sa.Table) -> list[tuple[sa.Column[Any], str]]:
    """The parent's primary key as declared, each column with its name in child tables
    (``parent_<name>``): children follow whatever key the parent has (issue 14)."""
    return [(column, f"parent_{column.name}") for column in parent.primary_key.columns]


def _child_table(resource: Resource, child: Child, parent: sa.Table) -> sa.Table:
    return sa.Table(
        resource.child_table(child),
        metadata,
        *(
            sa.Column(name, column.type, primary_key=True, comment=f"{parent.name}.{column.name}")
            for column, name in parent_key(parent)
        ),
        sa.Column(
            "position",
            sa.Integer,
            primary_key=True,
            autoincrement=False,
            comment=f"0-based index in data.{child.path}",
        ),
        *(
            sa.Column(c.name, _SQL_TYPES[c.type], comment=f"element.{c.path}")
            for c in child.columns
        ),
        sa.Column(
            "data",
            Json(),
            nullable=False,
            comment="the element as the parent holds it",
        ),
        comment=f"one row per element of {parent.name}.data.{child.path}",
    )


child_tables: dict[str, tuple[tuple[Child, sa.Table], ...]] = {
    name: tuple((c, _child_table(r, c, resource_tables[name])) for c in r.children)
    for name, r in REGISTRY.items()
}
"""Each resource's child tables, in registry order, beside the child they store."""
