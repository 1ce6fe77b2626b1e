"""Alembic environment: always driven from ``worker.warehouse.migrate`` with a live connection.

rosesync has no alembic.ini; ``migrate.upgrade()`` passes the connection (already inside the
transaction that holds the migration lock) through ``config.attributes``.
"""

from alembic import context

from worker.warehouse.migrate import VERSION_TABLE

context.configure(
    connection=context.config.attributes["connection"],
    version_table=VERSION_TABLE,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
