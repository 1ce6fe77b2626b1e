"""The worker's own tables: credentials, sync state, run history, leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from worker.warehouse.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rrsync_credentials",
        sa.Column(
            "org", sa.String(200), primary_key=True, comment="ROSEROCKET_ORG_ID or 'default'"
        ),
        sa.Column("access_token", sa.Text, nullable=False, comment="Fernet-encrypted"),
        sa.Column("refresh_token", sa.Text, nullable=False, comment="Fernet-encrypted"),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("obtained_at", UTCDateTime, nullable=False),
        sa.Column("refreshed_at", UTCDateTime),
        sa.Column("state", sa.String(32), nullable=False, comment="ok | reauth_required"),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "rrsync_state",
        sa.Column("resource", sa.String(100), primary_key=True),
        sa.Column("org", sa.String(200), primary_key=True),
        sa.Column("cursor", UTCDateTime, comment="greatest updated_at committed, capped"),
        sa.Column("last_full_sync_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    counters = (
        "pages",
        "records",
        "deleted",
        "requests",
        "retries",
        "unauthorized",
        "rate_limited",
        "token_refreshes",
    )
    op.create_table(
        "rrsync_runs",
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
        *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in counters),
        sa.Column("cursor_before", UTCDateTime),
        sa.Column("cursor_after", UTCDateTime),
        sa.Column("error", sa.Text),
        sa.Column("trigger", sa.String(16), nullable=False, comment="cli | celery"),
        sa.Column("task_id", sa.String(64)),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_rrsync_runs_resource_started", "rrsync_runs", ["resource", "org", "started_at"]
    )
    op.create_table(
        "rrsync_leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("acquired_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rrsync_leases")
    op.drop_index("ix_rrsync_runs_resource_started", "rrsync_runs")
    op.drop_table("rrsync_runs")
    op.drop_table("rrsync_state")
    op.drop_table("rrsync_credentials")
