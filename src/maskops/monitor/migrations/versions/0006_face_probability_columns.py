"""Class probabilities of a face as numeric columns, for drift windows read without JSON decoding

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

``faces`` gains ``p_with_mask``, ``p_without_mask`` and ``p_mask_weared_incorrect``: the calibrated
probability of each class, the same value as the ``probabilities`` JSON holds (which stays, with every
key the classifier gave), NULL when the JSON has no such key. Existing rows are filled from the JSON in
one UPDATE (``json_extract`` on SQLite, ``->>`` on PostgreSQL). The downgrade drops the columns (SQLite
3.35 or later: ``ALTER TABLE ... DROP COLUMN``, so the faces table is not copied and no feedback or crop
row cascades away).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# the class names as of this revision (maskops.types.MaskClass); a later class list is a new migration
CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")


def upgrade() -> None:
    for name in CLASSES:
        op.add_column(
            "faces",
            sa.Column(f"p_{name}", sa.Float(), nullable=True, comment=f"calibrated probability of {name}"),
        )
    if op.get_bind().dialect.name == "postgresql":
        values = [f"p_{n} = CAST(probabilities ->> '{n}' AS DOUBLE PRECISION)" for n in CLASSES]
    else:
        values = [f"p_{n} = json_extract(probabilities, '$.{n}')" for n in CLASSES]
    op.execute(f"UPDATE faces SET {', '.join(values)}")


def downgrade() -> None:
    for name in reversed(CLASSES):
        op.drop_column("faces", f"p_{name}")
