"""Live checks: per-finding clean streak and alerted flag, the runner of each check run, the shared check
schedule and per-resource observations.

Revision ID: 0002_live_checks
Revises: 0001_baseline
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_live_checks"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A release ran create_all with these models before migrations existed: such a store may already hold the
    # new tables (and, if it was created by that release, the new columns), so only what is missing is added.
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    finding_columns = {column["name"] for column in inspector.get_columns("findings")}
    run_columns = {column["name"] for column in inspector.get_columns("check_runs")}

    if "alerted" not in finding_columns:
        with op.batch_alter_table("findings") as batch:
            batch.add_column(sa.Column("clean_streak", sa.Integer(), nullable=False, server_default="0"))
            batch.add_column(sa.Column("alerted", sa.Boolean(), nullable=False, server_default="0"))
        # Open and waived findings that exist now were alerted when they opened, before this column recorded it.
        findings = sa.table("findings", sa.column("status", sa.String()), sa.column("alerted", sa.Boolean()))
        op.execute(findings.update().where(findings.c.status.in_(["open", "waived"])).values(alerted=True))

    if "runner" not in run_columns:
        with op.batch_alter_table("check_runs") as batch:
            batch.add_column(sa.Column("runner", sa.String(), nullable=True))

    if "check_schedule" not in tables:
        op.create_table(
            "check_schedule",
            sa.Column("scope", sa.String(), primary_key=True),
            sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_ok_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_error", sa.String(), nullable=True),
            sa.Column("last_runner", sa.String(), nullable=True),
        )

    if "observations" not in tables:
        op.create_table(
            "observations",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("scope", sa.String(), nullable=False),
            sa.Column("resource", sa.String(), nullable=False),
            sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_ok_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_error", sa.String(), nullable=True),
            sa.UniqueConstraint("scope", "resource", name="uq_observations_scope_resource"),
        )
        op.create_index("ix_observations_scope", "observations", ["scope"])


def downgrade() -> None:
    op.drop_table("observations")
    op.drop_table("check_schedule")
    with op.batch_alter_table("check_runs") as batch:
        batch.drop_column("runner")
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("alerted")
        batch.drop_column("clean_streak")
