"""Everything a request handler needs that lives as long as the process."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from otaml.core.config import Settings
from otaml.fleet.checkins import CheckinBuffer
from otaml.fleet.keysets import KeySetCache
from otaml.fleet.config import ConfigSigner, SignedConfigCache
from otaml.fleet.tokens import TokenCache
from otaml.ops.audit import DeniedLimiter
from otaml.ops.metrics import Counters, Snapshots
from otaml.releases.polling import ResponseHeads, ValidatedCheckins
from otaml.rollouts.policy import PolicyCache
from otaml.storage.blob_cache import BlobCache
from otaml.storage.blobs import BlobStore
from otaml.storage.static_mirror import StaticMirror


@dataclass
class ServerContext:
    settings: Settings
    engine: Engine
    store: BlobStore
    mirror: StaticMirror
    checkins: CheckinBuffer
    tokens: TokenCache
    blob_cache: BlobCache
    policy: PolicyCache
    config_docs: SignedConfigCache
    keysets: KeySetCache
    denied: DeniedLimiter  # denied admin attempts written to the audit log, per minute
    counters: Counters  # plain ints the poll path bumps; /metrics reads them
    snapshots: Snapshots  # this process's counters on disk, for scrapes that reach another process
    checkin_memo: ValidatedCheckins  # the poll path's per-device memo of validated check-in headers
    poll_heads: ResponseHeads  # each served manifest's response headers, encoded once

    @classmethod
    def create(cls, settings: Settings, engine: Engine) -> ServerContext:
        store = BlobStore(settings.data_dir)
        return cls(
            settings=settings,
            engine=engine,
            store=store,
            blob_cache=BlobCache(store),
            mirror=StaticMirror(settings.data_dir / "static", settings.default_channel),
            checkins=CheckinBuffer(),
            tokens=TokenCache(engine, settings.policy_ttl),
            policy=PolicyCache(engine, settings.policy_ttl),
            config_docs=SignedConfigCache(ConfigSigner(settings.config_key_file)),
            keysets=KeySetCache(engine, settings.policy_ttl),
            denied=DeniedLimiter(),
            counters=Counters(),
            snapshots=Snapshots(settings.data_dir),
            checkin_memo=ValidatedCheckins(),
            poll_heads=ResponseHeads(settings.poll_interval),
        )
