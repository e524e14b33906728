"""API keys and shared rate-limit windows, for serving replicas on one database

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("rate_per_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "rate_limit_windows",
        sa.Column("ident", sa.String(length=160), nullable=False, comment="key:<id> or client:<host>"),
        sa.Column("window_start", sa.Integer(), nullable=False, comment="unix seconds"),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("ident", "window_start"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_windows")
    op.drop_table("api_keys")
