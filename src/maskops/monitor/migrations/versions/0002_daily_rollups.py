"""daily rollups: hourly counts summed per UTC day, filled from the hourly ones

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_requests",
        sa.Column("day", sa.Integer(), nullable=False, comment="days since 1970-01-01 UTC"),
        sa.Column("site", sa.String(length=64), nullable=False, comment="'' when untagged"),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("latency_bin", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "site", "source", "latency_bin"),
    )
    op.create_table(
        "daily_faces",
        sa.Column("day", sa.Integer(), nullable=False, comment="days since 1970-01-01 UTC"),
        sa.Column("site", sa.String(length=64), nullable=False, comment="'' when untagged"),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("faces", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "site", "source", "label"),
    )
    # hours are >= 0, so integer division is the floor on both databases
    op.execute(
        "INSERT INTO daily_requests (day, site, source, latency_bin, requests) "
        "SELECT hour / 24, site, source, latency_bin, SUM(requests) FROM hourly_requests "
        "GROUP BY hour / 24, site, source, latency_bin"
    )
    op.execute(
        "INSERT INTO daily_faces (day, site, source, label, faces) "
        "SELECT hour / 24, site, source, label, SUM(faces) FROM hourly_faces "
        "GROUP BY hour / 24, site, source, label"
    )


def downgrade() -> None:
    op.drop_table("daily_faces")
    op.drop_table("daily_requests")
