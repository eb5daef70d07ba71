"""Database engine and sessions. SQLite by default, any SQLAlchemy URL via OTAML_DATABASE_URL."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator

from sqlalchemy import BigInteger, cast, event, func, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from otaml.core.config import Settings


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets the dashboard read while check-ins are flushed; NORMAL sync is durable in WAL mode
            # across process crashes (only an OS crash can lose the last transaction).
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def alembic_config(connection=None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "otaml:migrations")
    cfg.attributes["connection"] = connection
    return cfg


@contextlib.contextmanager
def _migration_lock(engine: Engine, settings: Settings | None) -> Iterator[None]:
    """Several server processes may start at once on one database: one migrates, the others wait."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(4242017)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(4242017)"))
                conn.commit()
    elif settings is not None and engine.dialect.name == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with open(settings.data_dir / ".migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    else:
        yield


def init_db(engine: Engine, settings: Settings | None = None) -> None:
    """Bring the schema to the newest migration (server/otaml/migrations)."""
    from alembic import command

    with _migration_lock(engine, settings), engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")


def session_scope(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


def sum_int(column):  # type: ignore[no-untyped-def]
    """SUM of an integer column as an integer on every database: PostgreSQL sums bigint to numeric,
    which reaches Python as Decimal (and float + Decimal raises), SQLite to an int."""
    return cast(func.sum(column), BigInteger)
