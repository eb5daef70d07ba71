"""Tables and API shapes, a family per entity: XBase (shared fields), XCreate (input), X (table),
XPublic (output). Routes return XPublic, never a table model."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import ConfigDict, field_validator
from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from otaml.fleet.protocol import EventKind, Reason


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- signing keys ------------------------------------------------------------------------------------


class SigningKeyBase(SQLModel):
    key_id: str = Field(primary_key=True, max_length=16)
    public_pem: str


class SigningKey(SigningKeyBase, table=True):
    __tablename__ = "signing_key"
    created_at: datetime = Field(default_factory=utcnow)


class SigningKeyPublic(SigningKeyBase):
    created_at: datetime


# --- releases ------------------------------------------------------------------------------------------


class ReleaseBase(SQLModel):
    version: str = Field(index=True, max_length=17)
    channel: str = Field(index=True, max_length=32)
    sha256: str = Field(index=True, max_length=64)
    size: int
    filename: str = Field(max_length=128)
    project: str = Field(max_length=32)
    chip: str = Field(max_length=16)
    secure_version: int
    idf_ver: str = Field(default="", max_length=32)


class Release(ReleaseBase, table=True):
    __tablename__ = "release"
    __table_args__ = (UniqueConstraint("channel", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    # A staged release is offered only through a rollout; it becomes the channel's baseline when its
    # rollout completes, and never if the rollout is aborted.
    staged: bool = False


class ReleasePublic(ReleaseBase):
    id: int
    created_at: datetime
    file_url: str
    manifest_version: int | None = None  # of the channel's current manifest, if it names this release
    expires: datetime | None = None
    current: bool = False
    staged: bool = False


class ReleasesPublic(SQLModel):
    data: list[ReleasePublic]
    count: int


# --- manifests -----------------------------------------------------------------------------------------


class Manifest(SQLModel, table=True):
    """One signed firmware.json. A channel's current manifest is its highest manifest_version."""

    __tablename__ = "manifest"
    id: int | None = Field(default=None, primary_key=True)
    manifest_version: int = Field(sa_column=Column(BigInteger, unique=True, nullable=False, index=True))
    channel: str = Field(index=True, max_length=32)
    release_id: int = Field(foreign_key="release.id", index=True)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signature: str
    key_id: str = Field(foreign_key="signing_key.key_id", max_length=16)
    issued_at: datetime
    expires: datetime
    created_at: datetime = Field(default_factory=utcnow)


class ManifestPublic(SQLModel):
    channel: str
    manifest_version: int
    version: str
    key_id: str
    issued_at: datetime
    expires: datetime
    url: str


class ChannelPublic(SQLModel):
    name: str
    current: ManifestPublic | None


class ServerInfo(SQLModel):
    """What the CLI needs before it signs: where files will live and what comes next."""

    project: str
    chip: str
    base_url: str
    next_manifest_version: int
    signing_keys: list[str]
    channels: list[ChannelPublic]
    config_key_id: str = ""  # the server's online key for desired-config documents
    config_public_key: str = ""  # PEM; firmware pins it (CONFIG_OTAML_CONFIG_KEY / main/keys/config_pub.pem)


# --- devices -------------------------------------------------------------------------------------------


DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
TAG_RE = re.compile(r"^[a-z0-9._:-]{1,32}$")


class DeviceBase(SQLModel):
    device_id: str = Field(unique=True, index=True, max_length=64)


class DeviceCreate(DeviceBase):
    @field_validator("device_id")
    @classmethod
    def _device_id_shape(cls, v: str) -> str:
        if not DEVICE_ID_RE.match(v):
            raise ValueError(f"expected 1 to 64 of A-Z a-z 0-9 . _ : -, got {v[:80]!r}")
        return v


class Device(DeviceBase, table=True):
    __tablename__ = "device"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    # Reported state, from the latest check-in.
    last_seen: datetime | None = Field(default=None, index=True)
    channel: str | None = Field(default=None, max_length=32)
    version: str | None = Field(default=None, index=True, max_length=32)
    partition: str | None = Field(default=None, max_length=16)
    ota_state: str | None = Field(default=None, max_length=16)
    manifest_version: int | None = Field(default=None, sa_column=Column(BigInteger))
    secure_version: int | None = None
    # Latest update event, so the device list shows failures without a join.
    last_event: str | None = Field(default=None, max_length=24)
    last_reason: str | None = Field(default=None, max_length=32)
    # The model it runs and what it predicts (ML check-in headers).
    ml_model: str | None = Field(default=None, max_length=48)
    ml_counters: str | None = Field(default=None, max_length=400)
    ml_latency_us: int | None = None
    # Rollout ring bucket, sha256(device_id) % 10000: fixed for life, so a device's ring never changes.
    bucket: int = Field(default=0, index=True)
    tags: str = Field(default="[]", max_length=400)  # JSON list of labels: "berlin", "owner:acme", "hw:rev2"
    # Desired firmware overrides: a pin names a version; a hold keeps whatever the device runs.
    pin_version: str | None = Field(default=None, max_length=32)
    hold: bool = False
    # Reported configuration: the revision the device applied and the properties it says it runs.
    config_revision: int | None = Field(default=None, sa_column=Column(BigInteger))
    reported_config: str | None = Field(default=None, max_length=400)


class DevicePublic(DeviceBase):
    model_config = ConfigDict(from_attributes=True)
    created_at: datetime
    last_seen: datetime | None
    channel: str | None
    version: str | None
    partition: str | None
    ota_state: str | None
    manifest_version: int | None
    secure_version: int | None
    last_event: str | None
    last_reason: str | None
    ml_model: str | None = None
    ml_counters: dict[str, int] | None = None
    ml_latency_us: int | None = None
    bucket: int = 0
    tags: list[str] = []
    pin_version: str | None = None
    hold: bool = False
    config_revision: int | None = None
    reported_config: dict[str, int] | None = None

    @field_validator("ml_counters", "tags", "reported_config", mode="before")
    @classmethod
    def _from_json(cls, v: object) -> object:
        return json.loads(v) if isinstance(v, str) else v


class DeviceEnrolled(DevicePublic):
    token: str  # shown once; only its hash is stored


class DevicesPublic(SQLModel):
    data: list[DevicePublic]
    count: int


class DeviceUpdate(SQLModel):
    """Operator changes to one device; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")
    tags: list[str] | None = None
    pin_version: str | None = None  # "" removes the pin
    hold: bool | None = None

    @field_validator("tags")
    @classmethod
    def _tags_shape(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        bad = [t for t in v if not TAG_RE.match(t)]
        if bad:
            raise ValueError(f"expected tags of 1 to 32 of a-z 0-9 . _ : -, got {bad[0][:40]!r}")
        if len(v) > 12:
            raise ValueError(f"expected at most 12 tags, got {len(v)}")
        return sorted(set(v))


class DeviceState(SQLModel):
    """Desired next to reported, the device-twin view of one device."""

    device_id: str
    desired_version: str | None
    desired_because: str  # pin, hold, rollout, baseline, staged (keeps a version it already runs)
    reported_version: str | None
    desired_config: dict[str, int]
    desired_config_revision: int
    reported_config: dict[str, int] | None
    reported_config_revision: int | None
    firmware_differs: bool
    config_differs: bool


# --- device events -------------------------------------------------------------------------------------


class DeviceEventBase(SQLModel):
    # Plain strings in the database: the protocol gains reasons over time, and a native enum type would
    # need a migration for each (the API validates against the enums).
    kind: EventKind = Field(sa_type=String(24))
    version: str | None = Field(default=None, max_length=32)
    reason: Reason = Field(default=Reason.OK, sa_type=String(32))
    detail: str = Field(default="", max_length=256)


class DeviceEventCreate(DeviceEventBase):
    model_config = ConfigDict(extra="forbid")


class DeviceEvent(DeviceEventBase, table=True):
    __tablename__ = "device_event"
    __table_args__ = (Index("ix_device_event_version_kind", "version", "kind"),)  # rollout outcomes
    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(index=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class DeviceEventPublic(DeviceEventBase):
    id: int
    device_id: str
    created_at: datetime


class DeviceEventsPublic(SQLModel):
    data: list[DeviceEventPublic]
    count: int


# --- rollouts ------------------------------------------------------------------------------------------


class RolloutState(StrEnum):
    WAITING = "waiting"  # started, but no device matches yet: nobody is offered the release until one does
    RUNNING = "running"
    PAUSED = "paused"  # by the operator: nobody new is offered the release
    HALTED = "halted"  # by the failure threshold: nobody new is offered the release
    ABORTED = "aborted"  # final: the release is never offered again and never becomes the baseline
    DONE = "done"  # final: every ring succeeded and the release is the channel's baseline


ACTIVE_ROLLOUT_STATES = (RolloutState.WAITING, RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.HALTED)
EVALUATED_ROLLOUT_STATES = (RolloutState.WAITING, RolloutState.RUNNING)


class RolloutBase(SQLModel):
    channel: str = Field(index=True, max_length=32)
    version: str = Field(max_length=17)
    # Cumulative percentages of the fleet; ring i is the devices with bucket < rings[i] * 100.
    rings: list[int] = Field(default_factory=lambda: [1, 10, 50, 100], sa_type=JSON)
    tags: list[str] = Field(default_factory=list, sa_type=JSON)  # a device must carry all of them
    devices: list[str] = Field(default_factory=list, sa_type=JSON)  # if given, only these devices
    success_pct: float = Field(default=90.0, gt=0, le=100)  # of a ring's devices confirmed to advance
    max_failures: int | None = Field(default=None, ge=0)  # halt when failures exceed this count...
    max_failure_pct: float | None = Field(default=20.0, ge=0, le=100)  # ...or this share of reports
    min_reports: int = Field(default=3, ge=1)  # outcomes needed before the failure threshold applies
    silence_timeout: int = Field(default=900, ge=1)  # s after taking the update without a word: failed
    soak_seconds: int = Field(default=0, ge=0)  # minimum time in a ring before advancing


class RolloutCreate(RolloutBase):
    model_config = ConfigDict(extra="forbid")

    @field_validator("rings")
    @classmethod
    def _rings_shape(cls, v: list[int]) -> list[int]:
        if not v or v[-1] != 100 or any(not 0 < r <= 100 for r in v) or v != sorted(set(v)):
            raise ValueError(f"expected increasing percentages ending at 100, e.g. [1, 10, 50, 100], got {v}")
        return v

    @field_validator("tags")
    @classmethod
    def _tags_shape(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if not TAG_RE.match(t)]
        if bad:
            raise ValueError(f"expected tags of 1 to 32 of a-z 0-9 . _ : -, got {bad[0][:40]!r}")
        return v


class Rollout(RolloutBase, table=True):
    __tablename__ = "rollout"
    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    state: str = Field(default=RolloutState.RUNNING, max_length=16, index=True)
    stage: int = 0  # index into rings
    # Bucket bounds of the rings reached so far (rings.entry_bound): fixed when a ring is entered, only
    # ever widened to take in a first device, so a device offered the release stays in its ring.
    bounds: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"))
    halt_reason: str = Field(default="", max_length=256)
    # Failures the operator saw when resuming a halted rollout: only failures beyond these count again.
    acknowledged_failures: int = 0
    started_at: datetime = Field(default_factory=utcnow)
    stage_started_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class RingProgress(SQLModel):
    ring: int  # index
    percent: int
    bound: int  # devices with a bucket below this are in rings 0..ring (widened on small fleets)
    devices: int  # in this ring (its band of buckets), on the channel, matching the rollout's filters
    confirmed: int
    failed: int  # rolled back, rejected, or silent past the timeout after taking the update
    silent: int  # included in failed
    pending: int  # offered or waiting, no outcome yet (includes retrying)
    retrying: int = 0  # rolled back because the server was unreachable: offered again, not a failure
    offered: bool  # the ring has been reached


class RolloutPublic(RolloutBase):
    id: int
    state: RolloutState
    stage: int
    halt_reason: str
    acknowledged_failures: int
    started_at: datetime
    stage_started_at: datetime
    updated_at: datetime
    bounds: list[int] = []
    rings_progress: list[RingProgress] = []
    confirmed: int = 0
    failed: int = 0
    pending: int = 0
    # One line for people: what the state means now ("waiting for devices ...", "1 failed in ring 1").
    status: str = ""
    attention: bool = False  # running, but a reached ring has failures: not a green badge


class RolloutsPublic(SQLModel):
    data: list[RolloutPublic]
    count: int


# --- desired configuration -----------------------------------------------------------------------------


class ConfigScope(StrEnum):
    CHANNEL = "channel"
    TAG = "tag"
    DEVICE = "device"


class ConfigLayerBase(SQLModel):
    scope: str = Field(max_length=8)  # ConfigScope
    name: str = Field(max_length=64)  # channel name, tag, or device id
    properties: dict[str, int] = Field(default_factory=dict, sa_type=JSON)


class ConfigLayer(ConfigLayerBase, table=True):
    """Desired configuration properties for a channel, a tag or one device. A device's desired config
    merges channel, then its tags (sorted), then its own layer; later layers win."""

    __tablename__ = "config_layer"
    __table_args__ = (UniqueConstraint("scope", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    updated_at: datetime = Field(default_factory=utcnow)


class ConfigLayerPublic(ConfigLayerBase):
    updated_at: datetime


class FleetRevision(SQLModel, table=True):
    """One row counting operator and rollout changes. Every server process compares it every few
    seconds and reloads its in-memory fleet policy when it moved; ``config`` orders the signed
    configuration documents (a device applies only a newer one)."""

    __tablename__ = "fleet_revision"
    id: int = Field(default=1, primary_key=True)
    policy: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    config: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
