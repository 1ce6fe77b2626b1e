"""The shared back-off after failed token refreshes (issue 13, item 3).

Revision ID: 0004_refresh_backoff
Revises: 0003_operator
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from worker.warehouse.schema import UTCDateTime

revision = "0004_refresh_backoff"
down_revision = "0003_operator"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rrsync_credentials") as table:
        table.add_column(
            sa.Column(
                "refresh_failures",
                sa.Integer,
                nullable=False,
                server_default="0",
                comment="failed refresh cycles in a row",
            )
        )
        table.add_column(
            sa.Column(
                "refresh_blocked_until",
                UTCDateTime,
                comment="no token request from any process before this",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("rrsync_credentials") as table:
        table.drop_column("refresh_blocked_until")
        table.drop_column("refresh_failures")
