"""The analyst's views (issue 14, item 4): ``v_<resource>``, the live rows of ``rr_<resource>``
(a soft-deleted row has ``deleted_at``, which nobody should have to remember), and
``v_<resource>__<child>``, the child rows of live parents.

``rosesync db upgrade`` (and the first use) creates them and keeps them current: a view whose
columns are not the ones its tables now have (a typed column was added, say) is dropped and
created again; a current view is left alone, so an upgrade with nothing to do changes nothing.
"""

from __future__ import annotations

import sqlalchemy as sa

from worker.warehouse.db import column_names
from worker.warehouse.schema import child_tables, parent_key, resource_tables


def definitions() -> dict[str, sa.Select[tuple[object, ...]]]:
    """Each view's name and query, in registry order (a parent's view before its children's)."""
    views: dict[str, sa.Select[tuple[object, ...]]] = {}
    for name, parent in resource_tables.items():
        live = parent.c.deleted_at.is_(None)
        views[f"v_{name}"] = sa.select(
            *(c for c in parent.c if c is not parent.c.deleted_at)
        ).where(live)
        for _, table in child_tables[name]:
            joined = sa.and_(*(table.c[child] == column for column, child in parent_key(parent)))
            views[f"v_{table.name.removeprefix('rr_')}"] = (
                sa.select(*table.c).select_from(table.join(parent, joined)).where(live)
            )
    return views


def ensure(conn: sa.Connection) -> list[str]:
    """Create the views that are missing or out of date; what changed."""
    inspector = sa.inspect(conn)
    existing = set(inspector.get_view_names())
    changes: list[str] = []
    for name, query in definitions().items():
        wanted = [c.name for c in query.selected_columns]
        if name in existing:
            if column_names(conn, name) == wanted:
                continue
            conn.exec_driver_sql(f'DROP VIEW "{name}"')
            changes.append(f"replaced view {name}")
        else:
            changes.append(f"created view {name}")
        sql = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        conn.exec_driver_sql(f'CREATE VIEW "{name}" AS {sql}')
    return changes
