"""face crops of hard cases (MASKOPS_STORE_FACES=hard), for review

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "face_crops",
        sa.Column("request_id", sa.String(length=80), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id", "face_index"],
            ["faces.request_id", "faces.face_index"],
            name="fk_face_crops_face",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", "face_index"),
    )
    op.create_index(op.f("ix_face_crops_created_at"), "face_crops", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_face_crops_created_at"), table_name="face_crops")
    op.drop_table("face_crops")
