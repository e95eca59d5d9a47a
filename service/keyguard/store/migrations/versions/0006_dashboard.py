"""Dashboard: web sessions and one-time login links (digests only), each resource's last observed facts (the keys
page) and each check run's gauges (the weight budget chart).

Revision ID: 0006_dashboard
Revises: 0005_incidents
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_dashboard"
down_revision = "0005_incidents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # As in 0002-0005: a store that lost its version table is replayed from the baseline, so only what is missing
    # is added.
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())

    if "facts" not in {column["name"] for column in inspector.get_columns("observations")}:
        with op.batch_alter_table("observations") as batch:
            batch.add_column(sa.Column("facts", sa.JSON(), nullable=True))
    if "gauges" not in {column["name"] for column in inspector.get_columns("check_runs")}:
        with op.batch_alter_table("check_runs") as batch:
            batch.add_column(sa.Column("gauges", sa.JSON(), nullable=True))

    if "web_sessions" not in tables:
        op.create_table(
            "web_sessions",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("session_hash", sa.String(), nullable=False),
            sa.Column("token_name", sa.String(), nullable=False),
            sa.Column("role", sa.String(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
            sa.UniqueConstraint("session_hash", name="uq_web_sessions_session_hash"),
        )
    if "login_links" not in tables:
        op.create_table(
            "login_links",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("code_hash", sa.String(), nullable=False),
            sa.Column("token_name", sa.String(), nullable=False),
            sa.Column("role", sa.String(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
            sa.UniqueConstraint("code_hash", name="uq_login_links_code_hash"),
        )


def downgrade() -> None:
    op.drop_table("login_links")
    op.drop_table("web_sessions")
    with op.batch_alter_table("check_runs") as batch:
        batch.drop_column("gauges")
    with op.batch_alter_table("observations") as batch:
        batch.drop_column("facts")
