"""Alembic environment: migrates the engine handed over by ``storecast.common.db.upgrade``."""

from __future__ import annotations

from alembic import context

import storecast.analytics.tables
import storecast.common.audit
import storecast.common.auth
import storecast.registry.tables  # noqa: F401  (registers the tables on Base.metadata)
from storecast.common.db import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
