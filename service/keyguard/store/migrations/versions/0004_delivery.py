"""Durable delivery: a dedup key on every alert, one delivery row per alert and route with its own backoff,
and every attempt recorded as the evidence of delivery.

Revision ID: 0004_delivery
Revises: 0003_access
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_delivery"
down_revision = "0003_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A store whose version table was lost may hold parts of this already (stamped at the baseline and replayed):
    # only what is missing is added, as in 0002 and 0003.
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    alert_columns = {column["name"] for column in inspector.get_columns("alerts")}

    if "dedup_key" not in alert_columns:
        with op.batch_alter_table("alerts") as batch:
            batch.add_column(sa.Column("dedup_key", sa.String(), nullable=False, server_default=sa.text("''")))
            batch.add_column(sa.Column("fanned_out", sa.Boolean(), nullable=False, server_default="0"))
        # Alerts queued before this revision: the dedup key is their finding's fingerprint; delivered ones are done.
        alerts = sa.table("alerts", sa.column("fingerprint", sa.String()), sa.column("dedup_key", sa.String()),
                          sa.column("fanned_out", sa.Boolean()), sa.column("delivered_at", sa.DateTime(timezone=True)))
        op.execute(alerts.update().values(dedup_key=alerts.c.fingerprint))
        op.execute(alerts.update().where(alerts.c.delivered_at.is_not(None)).values(fanned_out=True))

    if "alert_deliveries" not in tables:
        op.create_table(
            "alert_deliveries",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("alert_pk", sa.Integer(), nullable=False),
            sa.Column("route", sa.String(), nullable=False),
            sa.Column("status", sa.String(), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_error", sa.String(), nullable=True),
            sa.Column("gave_up_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("fallback_for", sa.String(), nullable=True),
            sa.UniqueConstraint("alert_pk", "route", name="uq_alert_deliveries_alert_route"),
        )
        op.create_index("ix_alert_deliveries_alert_pk", "alert_deliveries", ["alert_pk"])
        op.create_index("ix_alert_deliveries_route", "alert_deliveries", ["route"])
        op.create_index("ix_alert_deliveries_status", "alert_deliveries", ["status"])

    if "delivery_attempts" not in tables:
        op.create_table(
            "delivery_attempts",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("delivery_pk", sa.Integer(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ok", sa.Boolean(), nullable=False),
            sa.Column("duration_ms", sa.Integer(), nullable=False),
            sa.Column("detail", sa.String(), nullable=False),
        )
        op.create_index("ix_delivery_attempts_delivery_pk", "delivery_attempts", ["delivery_pk"])


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_table("alert_deliveries")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("fanned_out")
        batch.drop_column("dedup_key")
