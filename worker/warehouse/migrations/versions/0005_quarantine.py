"""Records that cannot be stored wait in a quarantine table (issue 13, item 5).

Revision ID: 0005_quarantine
Revises: 0004_refresh_backoff
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from worker.warehouse.schema import UTCDateTime

revision = "0005_quarantine"
down_revision = "0004_refresh_backoff"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rrsync_quarantine",
        sa.Column("resource", sa.String(100), primary_key=True),
        sa.Column("org", sa.String(200), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True, comment="the record's id, else sha256: of raw"),
        sa.Column("record_id", sa.Text, comment="null when the record has no usable id"),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw", sa.Text, nullable=False, comment="as received, secrets redacted"),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rrsync_quarantine")
