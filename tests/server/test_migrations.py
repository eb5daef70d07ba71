"""The migrations build exactly the schema the models describe (on SQLite, and on PostgreSQL with
--postgres), so a model change without a migration fails here, not in production."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from otaml import models  # noqa: F401
from otaml.core.db import init_db


def test_migrated_schema_matches_the_models(tmp_path, database_url):
    engine = create_engine(database_url or f"sqlite:///{tmp_path / 'm.db'}")
    init_db(engine)
    init_db(engine)  # idempotent: a restart migrates nothing
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    engine.dispose()
    assert diff == [], diff
