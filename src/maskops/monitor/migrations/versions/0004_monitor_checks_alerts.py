"""monitoring checks, per-feature drift results, alert states and alert history

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=True),
        sa.Column("window_end", sa.DateTime(), nullable=True),
        sa.Column("site", sa.String(length=64), nullable=True),
        sa.Column("n_requests", sa.Integer(), nullable=False),
        sa.Column("n_faces", sa.Integer(), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("expected_accuracy", sa.Float(), nullable=True),
        sa.Column("accuracy_low", sa.Float(), nullable=True),
        sa.Column("accuracy_high", sa.Float(), nullable=True),
        sa.Column("measured_accuracy", sa.Float(), nullable=True),
        sa.Column("n_feedback", sa.Integer(), nullable=False),
        sa.Column("reference_accuracy", sa.Float(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False, comment="the full drift report"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_monitor_checks_created_at"), "monitor_checks", ["created_at"], unique=False)
    op.create_table(
        "drift_results",
        sa.Column("check_id", sa.Integer(), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("test", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Float(), nullable=True, comment="None: not enough data"),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["check_id"], ["monitor_checks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("check_id", "feature"),
    )
    op.create_table(
        "alert_states",
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False, comment="'' when not per site"),
        sa.Column("firing", sa.Boolean(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False, comment="when the current state began"),
        sa.Column("last_notified_at", sa.DateTime(), nullable=True),
        sa.Column("incident_id", sa.String(length=64), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("rule", "key"),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False, comment="'' when not per site"),
        sa.Column("state", sa.String(length=16), nullable=False, comment="firing or resolved"),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("message", sa.String(length=1000), nullable=False),
        sa.Column("delivery", sa.JSON(), nullable=False, comment="channel -> outcome"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_alert_events_created_at"), "alert_events", ["created_at"], unique=False)
    op.create_index(op.f("ix_alert_events_incident_id"), "alert_events", ["incident_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_events_incident_id"), table_name="alert_events")
    op.drop_index(op.f("ix_alert_events_created_at"), table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_table("alert_states")
    op.drop_table("drift_results")
    op.drop_index(op.f("ix_monitor_checks_created_at"), table_name="monitor_checks")
    op.drop_table("monitor_checks")
