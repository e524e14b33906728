"""prediction store: requests, faces, feedback, hourly rollups

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hourly_faces",
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False, comment="'' when untagged"),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("faces", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "site", "source", "label"),
    )
    op.create_table(
        "hourly_requests",
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False, comment="'' when untagged"),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("latency_bin", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "site", "source", "latency_bin"),
    )
    op.create_table(
        "requests",
        sa.Column("request_id", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False, comment="hours since 1970-01-01 UTC"),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=True),
        sa.Column("model_name", sa.String(length=128), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("detector", sa.String(length=64), nullable=True),
        sa.Column("detector_version", sa.String(length=64), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("stages_ms", sa.JSON(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("brightness", sa.Float(), nullable=True),
        sa.Column("contrast", sa.Float(), nullable=True),
        sa.Column("sharpness", sa.Float(), nullable=True),
        sa.Column("saturation", sa.Float(), nullable=True),
        sa.Column("n_faces", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index(op.f("ix_requests_created_at"), "requests", ["created_at"], unique=False)
    op.create_index("ix_requests_site_hour", "requests", ["site", "hour"], unique=False)

    op.create_table(
        "faces",
        sa.Column("request_id", sa.String(length=80), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.Column("size", sa.Float(), nullable=False, comment="shorter side of the box, px"),
        sa.Column("face_score", sa.Float(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False, comment="top calibrated probability"),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("uncertain_reason", sa.String(length=64), nullable=True),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["requests.request_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("request_id", "face_index"),
    )
    op.create_index("ix_faces_label", "faces", ["label"], unique=False)

    op.create_table(
        "feedback",
        sa.Column("request_id", sa.String(length=80), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("true_label", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False, comment="api or review"),
        sa.ForeignKeyConstraint(
            ["request_id", "face_index"],
            ["faces.request_id", "faces.face_index"],
            name="fk_feedback_face",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", "face_index"),
    )
    op.create_index(op.f("ix_feedback_created_at"), "feedback", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_feedback_created_at"), table_name="feedback")

    op.drop_table("feedback")
    op.drop_index("ix_faces_label", table_name="faces")

    op.drop_table("faces")
    op.drop_index("ix_requests_site_hour", table_name="requests")
    op.drop_index(op.f("ix_requests_created_at"), table_name="requests")

    op.drop_table("requests")
    op.drop_table("hourly_requests")
    op.drop_table("hourly_faces")
