"""Alembic environment of the prediction store: runs on the engine ``maskops.monitor.db`` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from maskops.monitor.schema import Base

config = context.config
engine = config.attributes["engine"]
version_table = config.get_main_option("version_table")

with engine.connect() as connection:
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=version_table,
        render_as_batch=is_sqlite,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # several replicas starting together: one migrates, the others wait and find it done
            connection.execute(text("SELECT pg_advisory_xact_lock(2026120319)"))
        context.run_migrations()
