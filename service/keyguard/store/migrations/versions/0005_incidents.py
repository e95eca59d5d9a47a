"""Incidents (with their timelines), silences and maintenance windows, route tiers on alerts, foreign activity
and containment runs with their steps.

Revision ID: 0005_incidents
Revises: 0004_delivery
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_incidents"
down_revision = "0004_delivery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # As in 0002-0004: a store that lost its version table is replayed from the baseline, so only what is missing
    # is added.
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    alert_columns = {column["name"] for column in inspector.get_columns("alerts")}

    if "tier" not in alert_columns:
        with op.batch_alter_table("alerts") as batch:
            batch.add_column(sa.Column("tier", sa.Integer(), nullable=False, server_default="0"))
            batch.add_column(sa.Column("incident_pk", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("silenced_by", sa.Integer(), nullable=True))
        op.create_index("ix_alerts_incident_pk", "alerts", ["incident_pk"])

    if "incidents" not in tables:
        op.create_table(
            "incidents",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("scope", sa.String(), nullable=False),
            sa.Column("fingerprint", sa.String(), nullable=False),
            sa.Column("rule_id", sa.String(), nullable=False),
            sa.Column("severity", sa.String(), nullable=False),
            sa.Column("resource", sa.String(), nullable=False),
            sa.Column("title", sa.String(), nullable=False),
            sa.Column("status", sa.String(), nullable=False),
            sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("tier", sa.Integer(), nullable=False),
            sa.Column("last_notified_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("notifications", sa.Integer(), nullable=False),
            sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("acknowledged_by", sa.String(), nullable=True),
            sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("resolved_by", sa.String(), nullable=True),
        )
        op.create_index("ix_incidents_fingerprint", "incidents", ["fingerprint"])
        op.create_index("ix_incidents_status", "incidents", ["status"])
        op.create_index("uq_incidents_active_fingerprint", "incidents", ["scope", "fingerprint"], unique=True,
                        sqlite_where=sa.text("status != 'resolved'"),
                        postgresql_where=sa.text("status != 'resolved'"))

    if "incident_events" not in tables:
        op.create_table(
            "incident_events",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("incident_pk", sa.Integer(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("kind", sa.String(), nullable=False),
            sa.Column("actor", sa.String(), nullable=False),
            sa.Column("detail", sa.String(), nullable=False),
        )
        op.create_index("ix_incident_events_incident_pk", "incident_events", ["incident_pk"])

    if "silences" not in tables:
        op.create_table(
            "silences",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("rule", sa.String(), nullable=False),
            sa.Column("resource", sa.String(), nullable=False),
            sa.Column("reason", sa.String(), nullable=False),
            sa.Column("author", sa.String(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("ended_by", sa.String(), nullable=True),
        )

    if "activity_events" not in tables:
        op.create_table(
            "activity_events",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("resource", sa.String(), nullable=False),
            sa.Column("kind", sa.String(), nullable=False),
            sa.Column("ref", sa.String(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("record", sa.JSON(), nullable=False),
            sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
            sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("cleared_by", sa.String(), nullable=True),
            sa.UniqueConstraint("resource", "kind", "ref", name="uq_activity_events_resource_kind_ref"),
        )
        op.create_index("ix_activity_events_resource", "activity_events", ["resource"])

    if "containment_runs" not in tables:
        op.create_table(
            "containment_runs",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("resource", sa.String(), nullable=False),
            sa.Column("action", sa.String(), nullable=False),
            sa.Column("trigger", sa.String(), nullable=False),
            sa.Column("actor", sa.String(), nullable=False),
            sa.Column("dry_run", sa.Boolean(), nullable=False),
            sa.Column("incident_pk", sa.Integer(), nullable=True),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("result", sa.String(), nullable=False),
            sa.Column("undo", sa.JSON(), nullable=False),
            sa.Column("evidence", sa.JSON(), nullable=True),
        )
        op.create_index("ix_containment_runs_resource", "containment_runs", ["resource"])
        op.create_index("ix_containment_runs_incident_pk", "containment_runs", ["incident_pk"])

    if "containment_steps" not in tables:
        op.create_table(
            "containment_steps",
            sa.Column("pk", sa.Integer(), primary_key=True),
            sa.Column("run_pk", sa.Integer(), nullable=False),
            sa.Column("action", sa.String(), nullable=False),
            sa.Column("target", sa.String(), nullable=False),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("result", sa.String(), nullable=False),
            sa.Column("detail", sa.String(), nullable=False),
        )
        op.create_index("ix_containment_steps_run_pk", "containment_steps", ["run_pk"])


def downgrade() -> None:
    op.drop_table("containment_steps")
    op.drop_table("containment_runs")
    op.drop_table("activity_events")
    op.drop_table("silences")
    op.drop_table("incident_events")
    op.drop_table("incidents")
    op.drop_index("ix_alerts_incident_pk", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("silenced_by")
        batch.drop_column("incident_pk")
        batch.drop_column("tier")
