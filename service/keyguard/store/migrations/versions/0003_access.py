"""Access: API tokens with roles (stored as sha256 only) and the audit log of operator actions.

Revision ID: 0003_access
Revises: 0002_live_checks
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_access"
down_revision = "0002_live_checks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # init_store stamps a store without a version table at the baseline and replays from there, so a store that
    # lost its version table may hold these tables already: only what is missing is created.
    tables = set(sa.inspect(op.get_bind()).get_table_names())

    if "api_tokens" not in tables:
        op.create_table(
            "api_tokens",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("name", sa.String(), nullable=False),
            sa.Column("role", sa.String(), nullable=False),
            sa.Column("token_hash", sa.String(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
            sa.UniqueConstraint("name", name="uq_api_tokens_name"),
            sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
        )

    if "audit_log" not in tables:
        op.create_table(
            "audit_log",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("actor", sa.String(), nullable=False),
            sa.Column("role", sa.String(), nullable=False),
            sa.Column("action", sa.String(), nullable=False),
            sa.Column("target", sa.String(), nullable=False),
            sa.Column("result", sa.String(), nullable=False),
            sa.Column("detail", sa.String(), nullable=False),
        )
        op.create_index("ix_audit_log_at", "audit_log", ["at"])
        op.create_index("ix_audit_log_actor", "audit_log", ["actor"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
