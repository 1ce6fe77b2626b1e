"""What each resource's endpoint was probed to do, and where created_at windows between sweeps
start (issue 12).

Revision ID: 0002_paging
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from worker.warehouse.schema import UTCDateTime

revision = "0002_paging"
down_revision = "0001"
branch_labels = None
depends_on = None

CREATED_CURSOR = "sweep: every record created before it is stored (windows between sweeps)"
FLAGS = (
    "total",
    "updated_filters",
    "updated_order",
    "start_inclusive",
    "end_inclusive",
    "created_filter",
    "by_id",
)


def upgrade() -> None:
    op.create_table(
        "rrsync_capabilities",
        sa.Column("resource", sa.String(100), primary_key=True),
        sa.Column("org", sa.String(200), primary_key=True),
        sa.Column("endpoint", sa.String(500), nullable=False, comment="the path probed"),
        sa.Column("probed_at", UTCDateTime, nullable=False),
        sa.Column("exists", sa.Boolean, nullable=False, comment="false: the list answered 404"),
        sa.Column("page_size", sa.Integer),
        sa.Column("total", sa.Boolean, comment="list bodies carry total"),
        *(sa.Column(name, sa.Boolean) for name in FLAGS[1:]),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("message", sa.Text),
        comment="what each resource's endpoint was probed to do (worker/source/probe.py)",
    )
    with op.batch_alter_table("rrsync_state") as table:
        table.add_column(sa.Column("created_cursor", UTCDateTime, comment=CREATED_CURSOR))


def downgrade() -> None:
    with op.batch_alter_table("rrsync_state") as table:
        table.drop_column("created_cursor")
    op.drop_table("rrsync_capabilities")
