"""Tables and API shapes, a family per entity: XBase (shared fields), XCreate (input), X (table),
XPublic (output). Routes return XPublic, never a table model."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from pydantic import ConfigDict, field_validator
from sqlalchemy import BigInteger, Column, LargeBinary, String, UniqueConstraint
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


class ReleasePublic(ReleaseBase):
    id: int
    created_at: datetime
    file_url: str
    manifest_version: int | None = None  # of the channel's current manifest, if it names this release
    expires: datetime | None = None
    current: bool = False


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


# --- devices -------------------------------------------------------------------------------------------


DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


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

    @field_validator("ml_counters", mode="before")
    @classmethod
    def _counters_from_json(cls, v: object) -> object:
        return json.loads(v) if isinstance(v, str) else v


class DeviceEnrolled(DevicePublic):
    token: str  # shown once; only its hash is stored


class DevicesPublic(SQLModel):
    data: list[DevicePublic]
    count: int


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
