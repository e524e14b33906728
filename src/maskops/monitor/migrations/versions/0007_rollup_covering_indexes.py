"""covering indexes on the rollups: business stats read them without touching the table rows

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

``/v1/stats`` by hour over a month reads some 170,000 ``hourly_requests`` rows for 1,000,000 faces.
Through the primary key alone each row's ``requests`` is one more look-up in the table; with an
index holding every column the read is an index range scan only (SQLite picks it as a covering
index; PostgreSQL as an index-only scan once the table is vacuumed, which autovacuum does). The
writer keeps one more index per rollup table up to date on each upsert.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (index, table, columns): the primary key's columns in its order, then the counted value
COVERING = (
    ("ix_hourly_requests_cover", "hourly_requests", ["hour", "site", "source", "latency_bin", "requests"]),
    ("ix_hourly_faces_cover", "hourly_faces", ["hour", "site", "source", "label", "faces"]),
    ("ix_daily_requests_cover", "daily_requests", ["day", "site", "source", "latency_bin", "requests"]),
    ("ix_daily_faces_cover", "daily_faces", ["day", "site", "source", "label", "faces"]),
)


def upgrade() -> None:
    for name, table, columns in COVERING:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(COVERING):
        op.drop_index(name, table_name=table)
