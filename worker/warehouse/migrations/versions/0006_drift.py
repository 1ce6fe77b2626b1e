"""Schema drift: the fields each resource is known to have, and the changes runs noticed
(issue 14, item 2).

Revision ID: 0006_drift
Revises: 0005_quarantine
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from worker.warehouse.schema import UTCDateTime

revision = "0006_drift"
down_revision = "0005_quarantine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rrsync_fields",
        sa.Column("resource", sa.String(100), primary_key=True),
        sa.Column("org", sa.String(200), primary_key=True),
        sa.Column("path", sa.Text, primary_key=True, comment="billing.total_amount, stops[].city"),
        sa.Column("types", sa.Text, nullable=False, comment="JSON types seen: number,string"),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
    )
    op.create_table(
        "rrsync_drift",
        sa.Column("resource", sa.String(100), primary_key=True),
        sa.Column("org", sa.String(200), primary_key=True),
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column(
            "change",
            sa.String(16),
            primary_key=True,
            comment="added | vanished | type | unparsable",
        ),
        sa.Column("detail", sa.Text, nullable=False, comment="types before and after, or column"),
        sa.Column(
            "count", sa.BigInteger, nullable=False, comment="runs that saw it; NULLed values"
        ),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("run_id", sa.Integer, comment="the last run that saw it"),
    )


def downgrade() -> None:
    op.drop_table("rrsync_drift")
    op.drop_table("rrsync_fields")
