"""What operators see: the beat's published schedule (rrsync_leases.detail) and alert state.

Revision ID: 0003_operator
Revises: 0002_paging
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from worker.warehouse.schema import UTCDateTime

revision = "0003_operator"
down_revision = "0002_paging"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rrsync_leases") as batch:
        batch.add_column(
            sa.Column(
                "detail",
                sa.Text,
                comment="JSON the holder publishes: its name, its schedule",
            )
        )
    op.create_table(
        "rrsync_alerts",
        sa.Column(
            "subject", sa.String(300), primary_key=True, comment="credential:org | sync:org:res"
        ),
        sa.Column("state", sa.String(16), nullable=False, comment="ok | alerting"),
        sa.Column("changed_at", UTCDateTime, nullable=False),
        sa.Column("message", sa.Text, comment="the last notification sent, redacted"),
    )


def downgrade() -> None:
    op.drop_table("rrsync_alerts")
    with op.batch_alter_table("rrsync_leases") as batch:
        batch.drop_column("detail")
