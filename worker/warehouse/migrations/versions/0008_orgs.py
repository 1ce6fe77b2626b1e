"""Many organizations (issue 15, items 1 and 2): the org in every resource row's primary key,
and a pause switch per org.

A warehouse from before this revision holds one org's records. Each ``rr_<resource>`` table
gets its ``org`` from the org its sync state names (rrsync_state has carried the org from the
start, ROSEROCKET_ORG_ID or ``default``), else from the one stored credential, else
``default``: the names a single-org install already uses, so it keeps syncing with no new
setting. More than one candidate for a table with rows is refused with a one-line error,
rather than guessed.

Resource tables are not versioned by Alembic (migrate.py adds the registry's columns): this
revision only rebuilds those that exist without ``org``. PostgreSQL alters the table in place
(a constant default costs no rewrite since PostgreSQL 11); SQLite cannot change a primary key,
so the table is rebuilt from the current definition and its rows copied.

Revision ID: 0008_orgs
Revises: 0005_quarantine
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from worker.warehouse.schema import ORG_LENGTH, UTCDateTime, org_updated_index, resource_tables

revision = "0008_orgs"
down_revision = "0007_schemas"
branch_labels = None
depends_on = None

NO_ORG = "default"  # credentials/store.py's name for a credential without ROSEROCKET_ORG_ID


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("rrsync_credentials") as batch:
        batch.add_column(
            sa.Column(
                "paused_at",
                UTCDateTime,
                comment="set: the org is not synced (rosesync orgs pause)",
            )
        )
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    for resource, table in resource_tables.items():
        if table.name not in existing:
            continue  # migrate.py creates it as defined
        columns = [c["name"] for c in inspector.get_columns(table.name)]
        if "org" in columns:
            continue
        org = _org_of(conn, resource, table.name)
        if conn.dialect.name == "postgresql":
            primary_key = inspector.get_pk_constraint(table.name)["name"]
            _alter_in_place(conn, table.name, org, str(primary_key))
        else:
            _rebuild(conn, table, columns, org, inspector.get_indexes(table.name))


def _org_of(conn: sa.Connection, resource: str, table_name: str) -> str:
    state_orgs = conn.execute(
        sa.text("SELECT DISTINCT org FROM rrsync_state WHERE resource = :r"), {"r": resource}
    ).scalars()
    candidates = sorted(set(state_orgs))
    if not candidates:
        candidates = sorted(conn.execute(sa.text("SELECT org FROM rrsync_credentials")).scalars())
    if len(candidates) <= 1:
        return str(candidates[0]) if candidates else NO_ORG
    # The registry's own table names, never input.
    rows = conn.execute(sa.text(f'SELECT count(*) FROM "{table_name}"')).scalar_one()  # noqa: S608
    if not rows:
        return str(candidates[0])
    raise RuntimeError(
        f"{table_name}: cannot tell which org its {rows} rows belong to (state and credentials "
        f"name {', '.join(candidates)}); keep only the org they were synced for in "
        "rrsync_state, then run `rosesync db upgrade` again"
    )


def _alter_in_place(conn: sa.Connection, name: str, org: str, primary_key: str) -> None:
    literal = org.replace("'", "''")
    conn.exec_driver_sql(
        f"ALTER TABLE \"{name}\" ADD COLUMN org VARCHAR({ORG_LENGTH}) NOT NULL DEFAULT '{literal}'"
    )
    conn.exec_driver_sql(f'ALTER TABLE "{name}" ALTER COLUMN org DROP DEFAULT')
    conn.exec_driver_sql(f"COMMENT ON COLUMN \"{name}\".org IS 'the credential''s org'")
    conn.exec_driver_sql(f'ALTER TABLE "{name}" DROP CONSTRAINT "{primary_key}"')
    conn.exec_driver_sql(f'ALTER TABLE "{name}" ADD PRIMARY KEY (org, id)')
    # a run's range queries are per org (schema.py): the index on updated_at alone gives way
    conn.exec_driver_sql(f'DROP INDEX IF EXISTS "ix_{name}_updated_at"')
    conn.exec_driver_sql(f'CREATE INDEX "{org_updated_index(name)}" ON "{name}" (org, updated_at)')


def _rebuild(
    conn: sa.Connection,
    table: sa.Table,
    columns: list[str],
    org: str,
    indexes: list[sa.engine.interfaces.ReflectedIndex],
) -> None:
    old = f"{table.name}_before_orgs"
    for index in indexes:  # their names would clash with the new table's
        conn.exec_driver_sql(f'DROP INDEX "{index["name"]}"')
    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" RENAME TO "{old}"')
    table.create(conn)
    kept = [name for name in columns if name in table.c]
    names = ", ".join(f'"{name}"' for name in kept)
    copy = f'INSERT INTO "{table.name}" (org, {names}) SELECT :org, {names} FROM "{old}"'  # noqa: S608
    conn.execute(sa.text(copy), {"org": org})  # the registry's names, never input
    conn.exec_driver_sql(f'DROP TABLE "{old}"')


def downgrade() -> None:
    # The org cannot leave the primary key once two orgs share an id; only the pause goes.
    with op.batch_alter_table("rrsync_credentials") as batch:
        batch.drop_column("paused_at")
