"""Tables and API shapes, a family per entity: XBase (shared fields), XCreate (input), X (table),
XPublic (output). Routes return XPublic, never a table model."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, field_validator, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from otaml.core.types import (
    INT32_MAX,
    UINT32_MAX,
    Channel,
    Detail,
    DeviceId,
    DeviceToken,
    Int32,
    ReportedVersion,
    Tag,
    VersionText,
)
from otaml.fleet import stored
from otaml.fleet.protocol import EventKind, Reason


def utcnow() -> datetime:
    return datetime.now(UTC)


class ErrorPublic(SQLModel):
    """Every 4xx answer: what was expected and what arrived, and the error's class name."""

    detail: str
    error: str


# --- signing keys ------------------------------------------------------------------------------------


class SigningKeyBase(SQLModel):
    key_id: str = Field(primary_key=True, max_length=16)
    public_pem: str


class SigningKey(SigningKeyBase, table=True):
    __tablename__ = "signing_key"
    created_at: datetime = Field(default_factory=utcnow)
    retired_at: datetime | None = Field(default=None)  # `release key retire`: manifests it signs are refused


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
    # esp_app_desc_t.secure_version is a uint32_t: a 64-bit column holds every value a manifest may carry.
    secure_version: int = Field(sa_type=BigInteger, ge=0, le=UINT32_MAX)
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


class MqttBridgeInfo(SQLModel):
    url: str
    prefix: str
    connected: bool
    pending: int  # messages in its queue now (at most OTAML_MQTT_QUEUE)
    published: int
    dropped: int  # pushed out of the full queue, oldest first, while the broker was away or slow


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
    checkins_dropped: int = 0  # check-ins this process could not store even alone (logged one by one)
    mqtt: MqttBridgeInfo | None = None  # this process's MQTT bridge; None: not configured (OTAML_MQTT_URL)


# --- devices -------------------------------------------------------------------------------------------


MAX_TAGS = 12
TAGS_COLUMN = 400  # Device.tags holds the JSON list


class DeviceBase(SQLModel):
    device_id: str = Field(unique=True, index=True, max_length=64)


class DeviceCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")
    device_id: DeviceId


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
    secure_version: int | None = Field(default=None, sa_type=BigInteger)  # a uint32_t on the device
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
    # Device health (check-in headers, fleet insight): Wi-Fi signal, heap, uptime, why it last reset.
    rssi: int | None = None  # dBm, wifi_ap_record_t.rssi (an int8_t)
    free_heap: int | None = Field(default=None, sa_type=BigInteger)  # bytes, esp_get_free_heap_size()
    min_free_heap: int | None = Field(default=None, sa_type=BigInteger)  # esp_get_minimum_free_heap_size()
    uptime_s: int | None = Field(default=None, sa_type=BigInteger)  # since boot
    reset_reason: str | None = Field(default=None, max_length=16)  # esp_reset_reason_t, see protocol.ResetReason


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
    reported_config: dict[str, int | str] | None = None
    status: str = "active"  # DeviceStatus: active, pending (claimed, not accepted), revoked
    rssi: int | None = None
    free_heap: int | None = None
    min_free_heap: int | None = None
    uptime_s: int | None = None
    reset_reason: str | None = None

    # JSON text columns: read so that no stored value can fail the response (fleet/stored.py).
    @field_validator("tags", mode="before")
    @classmethod
    def _tags_from_json(cls, v: object) -> object:
        return v if isinstance(v, list) else stored.tags(v)

    @field_validator("ml_counters", mode="before")
    @classmethod
    def _counts_from_json(cls, v: object) -> object:
        return v if isinstance(v, dict) else stored.counts(v)

    @field_validator("reported_config", mode="before")
    @classmethod
    def _properties_from_json(cls, v: object) -> object:
        return v if isinstance(v, dict) else stored.properties(v)


class DeviceEnrolled(DevicePublic):
    token: str  # shown once; only its hash is stored


class DevicesPublic(SQLModel):
    data: list[DevicePublic]
    count: int


def _tag_list(v: list[str]) -> list[str]:
    tags = sorted(set(v))
    if len(stored.dump_tags(tags)) > TAGS_COLUMN:
        raise ValueError(f"expected tags that fit {TAGS_COLUMN} characters as a JSON list, got {len(stored.dump_tags(tags))}")
    return tags


Tags = Annotated[list[Tag], PydanticField(max_length=MAX_TAGS), AfterValidator(_tag_list)]


class DeviceUpdate(SQLModel):
    """Operator changes to one device; fields left out stay as they are (null is never a value)."""

    model_config = ConfigDict(extra="forbid")
    # Defaults are not validated, so a field left out is None while an explicit null is refused.
    tags: Tags = PydanticField(None, description="the device's tags; [] removes all")  # type: ignore[assignment]
    pin_version: VersionText | Literal[""] = PydanticField(None, description='a release of its channel; "" unpins')  # type: ignore[assignment]
    hold: bool = PydanticField(None)  # type: ignore[assignment]
    # A pin is refused if the version is not a release of the device's channel, or is older than what
    # the device runs; a reason overrides that (and is logged).
    force_reason: Detail = PydanticField(None)  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: object) -> object:
        if isinstance(data, dict):
            nulls = sorted(str(k) for k, v in data.items() if v is None)
            if nulls:
                raise ValueError(f"expected a value for {', '.join(nulls)}, got null (leave a field out to keep it)")
        return data


class DeviceState(SQLModel):
    """Desired next to reported, the device-twin view of one device."""

    device_id: str
    desired_version: str | None
    desired_because: str  # pin, hold, rollout, baseline, staged (keeps a version it already runs)
    reported_version: str | None
    desired_config: dict[str, int | str]
    desired_config_revision: int
    reported_config: dict[str, int | str] | None
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


class DeviceEventCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")
    kind: EventKind
    version: ReportedVersion | None = None
    reason: Reason = Reason.OK
    detail: Detail = ""


class DeviceEvent(DeviceEventBase, table=True):
    __tablename__ = "device_event"
    __table_args__ = (Index("ix_device_event_version_kind", "version", "kind"),)  # rollout outcomes
    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(index=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class DeviceEventPublic(DeviceEventBase):
    # Plain text on the way out: a kind or reason a newer server stored still reads.
    kind: str  # type: ignore[assignment]
    reason: str  # type: ignore[assignment]
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
    # The ML gate (rollouts/mlgate.py): compares what the model does on devices running the release with
    # the baseline's devices over the last ml_window seconds. Off while both thresholds are None.
    ml_max_divergence: float | None = Field(default=None, ge=0, le=1)  # Jensen-Shannon divergence, base 2
    ml_max_latency_regression: float | None = Field(default=None, ge=0)  # percent slower mean inference
    ml_min_samples: int = Field(default=500, ge=1)  # predictions on each side before the gate judges
    ml_window: int = Field(default=900, ge=60)  # seconds of history compared


class RolloutCreate(RolloutBase):
    model_config = ConfigDict(extra="forbid")
    channel: Channel
    version: VersionText
    rings: list[Int32] = PydanticField(default_factory=lambda: [1, 10, 50, 100], max_length=100)
    tags: list[Tag] = PydanticField(default_factory=list, max_length=MAX_TAGS)
    devices: list[DeviceId] = PydanticField(default_factory=list, max_length=1000)
    success_pct: float = PydanticField(default=90.0, gt=0, le=100, allow_inf_nan=False)
    max_failures: int | None = PydanticField(default=None, ge=0, le=INT32_MAX)
    max_failure_pct: float | None = PydanticField(default=20.0, ge=0, le=100, allow_inf_nan=False)
    min_reports: int = PydanticField(default=3, ge=1, le=INT32_MAX)
    silence_timeout: int = PydanticField(default=900, ge=1, le=INT32_MAX)
    soak_seconds: int = PydanticField(default=0, ge=0, le=INT32_MAX)
    ml_max_divergence: float | None = PydanticField(default=None, ge=0, le=1, allow_inf_nan=False)
    ml_max_latency_regression: float | None = PydanticField(default=None, ge=0, le=100000, allow_inf_nan=False)
    ml_min_samples: int = PydanticField(default=500, ge=1, le=INT32_MAX)
    ml_window: int = PydanticField(default=900, ge=60, le=7 * 86400)

    @field_validator("rings")
    @classmethod
    def _rings_shape(cls, v: list[int]) -> list[int]:
        if not v or v[-1] != 100 or any(not 0 < r <= 100 for r in v) or v != sorted(set(v)):
            raise ValueError(f"expected increasing percentages ending at 100, e.g. [1, 10, 50, 100], got {v}")
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


class MlMeasuresPublic(SQLModel):
    """What the ML gate compares: devices running the rollout's release against the channel's baseline
    release, over the last ``window_s`` seconds of history (rollouts/mlgate.py)."""

    baseline_version: str | None
    window_s: int
    samples: int  # predictions by devices on the release within the window
    baseline_samples: int
    rates: dict[str, float] = {}  # class -> share of predictions
    baseline_rates: dict[str, float] = {}
    divergence: float | None = None  # Jensen-Shannon divergence of the class rates, base 2: 0 same .. 1 disjoint
    latency_us: float | None = None  # mean inference latency reported by the release's devices
    baseline_latency_us: float | None = None
    latency_regression_pct: float | None = None  # how much slower, in percent (negative: faster)
    enough: bool = False  # both sides have ml_min_samples predictions: the gate judges


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
    ml: MlMeasuresPublic | None = None  # the ML gate's measures (also without thresholds, when there is data)


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
    properties: dict[str, int | str] = Field(default_factory=dict, sa_type=JSON)


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
    # Device credentials changed (revoke, rotate, accept, remove): token caches of every process reload.
    credentials: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


# --- provisioning, claiming, token lifecycle, key sets (issue 12) ------------------------------------------


class DeviceStatus(StrEnum):
    ACTIVE = "active"    # checks in
    PENDING = "pending"  # claimed, waiting for `release device accept` (403 until then)
    REVOKED = "revoked"  # every request 401


class DeviceCredentials(SQLModel, table=True):
    """A device's token lifecycle, one row per device beside the device table (which holds what it
    reports): its status, and a rotated token waiting to be handed over. The rotated token is kept in
    clear only until the device has used it once (manifests/README.md, "Device tokens")."""

    __tablename__ = "device_credentials"
    device_id: str = Field(primary_key=True, max_length=64)
    status: str = Field(default=DeviceStatus.ACTIVE, max_length=8, index=True)
    pending_token: str | None = Field(default=None, max_length=64)
    claimed_with: int | None = Field(default=None)  # ClaimToken.id
    updated_at: datetime = Field(default_factory=utcnow)


class DeviceSpec(SQLModel):
    model_config = ConfigDict(extra="forbid")
    device_id: DeviceId
    tags: Tags = PydanticField(default_factory=list)  # type: ignore[assignment]


class DeviceBatchCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")
    devices: list[DeviceSpec] = PydanticField(min_length=1, max_length=10_000)
    rotate: bool = False  # already-enrolled ids get a new token instead of a refusal

    @field_validator("devices")
    @classmethod
    def _unique(cls, v: list[DeviceSpec]) -> list[DeviceSpec]:
        seen: set[str] = set()
        for d in v:
            if d.device_id in seen:
                raise ValueError(f"expected each device id once, got {d.device_id!r} twice")
            seen.add(d.device_id)
        return v


class DeviceTokenPublic(SQLModel):
    device_id: str
    token: str  # shown once
    rotated: bool = False


class DeviceBatchEnrolled(SQLModel):
    data: list[DeviceTokenPublic]
    count: int


class DeviceCredentialsPublic(SQLModel):
    device_id: str
    status: DeviceStatus
    token_rotation_pending: bool


class ClaimTokenBase(SQLModel):
    name: str = Field(max_length=64, unique=True)
    expires_at: datetime
    max_uses: int = Field(ge=1, le=INT32_MAX)
    uses: int = 0
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    require_approval: bool = False
    revoked: bool = False


class ClaimToken(ClaimTokenBase, table=True):
    """A fleet claim token: provisioned into many devices instead of per-device tokens; each device claims
    a device token of its own with it (POST /api/claim)."""

    __tablename__ = "claim_token"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class ClaimTokenCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")
    name: DeviceId
    expires_in: int = PydanticField(7 * 86400, ge=60, le=10 * 365 * 86400, description="seconds")
    max_uses: int = PydanticField(100, ge=1, le=1_000_000)
    tags: Tags = PydanticField(default_factory=list)  # type: ignore[assignment]
    require_approval: bool = False


class ClaimTokenPublic(ClaimTokenBase):
    id: int
    created_at: datetime


class ClaimTokenCreated(ClaimTokenPublic):
    token: str  # shown once


class ClaimTokensPublic(SQLModel):
    data: list[ClaimTokenPublic]
    count: int


class ClaimRequest(SQLModel):
    """What a device sends to claim itself: its id and the token it chose."""

    model_config = ConfigDict(extra="forbid")
    device_id: DeviceId
    token: DeviceToken


class ClaimAnswer(SQLModel):
    device_id: str
    status: DeviceStatus


class KeySet(SQLModel, table=True):
    """A signed key-set document (manifests/README.md, "Key rotation"), stored as uploaded."""

    __tablename__ = "key_set"
    keyset_version: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signature: str = Field(max_length=128)
    signer: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


class KeySetCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")
    document: str = PydanticField(max_length=4096, description="the key-set document, base64 (S1)")
    signature: str = PydanticField(max_length=128)


class KeySetPublic(SQLModel):
    keyset_version: int
    key_ids: list[str]
    signer: str
    created_at: datetime


class KeySetsPublic(SQLModel):
    data: list[KeySetPublic]
    count: int


class TrustedKeyCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")
    public_pem: str = PydanticField(max_length=1024)


class TrustedKeyPublic(SQLModel):
    key_id: str
    public_pem: str
    created_at: datetime
    retired_at: datetime | None
    test_key: bool = False  # one of the repository's test keys (refused outside development)


class TrustedKeysPublic(SQLModel):
    data: list[TrustedKeyPublic]
    count: int


# --- fleet insight: history, audit log, webhooks ------------------------------------------------------
# History is kept as aggregates, never per check-in: a row per (bucket, channel, version) and one per class
# label, written by the check-in flush (fleet/history.py). Buckets start at epoch seconds that are a
# multiple of their resolution (60: a minute, 3600: an hour).


class HistoryBucket(SQLModel, table=True):
    __tablename__ = "history_bucket"
    __table_args__ = (UniqueConstraint("resolution", "start", "channel", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    resolution: int
    start: int = Field(sa_type=BigInteger, index=True)  # epoch seconds
    channel: str = Field(max_length=32)
    version: str = Field(max_length=32)  # "" for a device that reported none
    checkins: int = Field(default=0, sa_type=BigInteger)  # polls answered
    devices: int = Field(default=0, sa_type=BigInteger)  # distinct devices on this version in the bucket
    # Distinct devices whose first check-in of the bucket was on this version: summed over versions, the
    # devices seen in the bucket (a device that updated within it counts once).
    first_seen: int = Field(default=0, sa_type=BigInteger)
    reboots: int = Field(default=0, sa_type=BigInteger)  # restarts seen (uptime or ML counters went back)
    latency_sum: int = Field(default=0, sa_type=BigInteger)  # microseconds, over latency_n check-ins
    latency_n: int = Field(default=0, sa_type=BigInteger)


class HistoryClass(SQLModel, table=True):
    """Predictions per class in a bucket: the deltas of devices' lifetime ML counters."""

    __tablename__ = "history_class"
    __table_args__ = (UniqueConstraint("resolution", "start", "channel", "version", "label"),)
    id: int | None = Field(default=None, primary_key=True)
    resolution: int
    start: int = Field(sa_type=BigInteger, index=True)
    channel: str = Field(max_length=32)
    version: str = Field(max_length=32)
    label: str = Field(max_length=16)
    count: int = Field(default=0, sa_type=BigInteger)


class HistoryOutcome(SQLModel, table=True):
    """Update events per version, kind and reason in a bucket (written with the event)."""

    __tablename__ = "history_outcome"
    __table_args__ = (UniqueConstraint("resolution", "start", "channel", "version", "kind", "reason"),)
    id: int | None = Field(default=None, primary_key=True)
    resolution: int
    start: int = Field(sa_type=BigInteger, index=True)
    channel: str = Field(max_length=32)
    version: str = Field(max_length=32)
    kind: str = Field(max_length=24)
    reason: str = Field(max_length=32)
    count: int = Field(default=0, sa_type=BigInteger)


class DeviceHistory(SQLModel, table=True):
    """One device's hour (a heartbeat, as fleet-monitoring tools keep per device): written by the flush
    under the device row's lock, so the ML counts can be a JSON object merged in Python."""

    __tablename__ = "device_history"
    __table_args__ = (UniqueConstraint("device_id", "start"),)
    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(max_length=64)
    start: int = Field(sa_type=BigInteger, index=True)  # the hour, epoch seconds
    version: str = Field(default="", max_length=32)  # the last one reported in the hour
    checkins: int = 0
    reboots: int = 0
    ml_counts: str = Field(default="{}", max_length=400)  # JSON label -> predictions in the hour
    latency_sum: int = Field(default=0, sa_type=BigInteger)
    latency_n: int = 0
    rssi_sum: int = 0
    rssi_n: int = 0
    rssi_min: int | None = None
    free_heap_min: int | None = Field(default=None, sa_type=BigInteger)
    min_free_heap: int | None = Field(default=None, sa_type=BigInteger)


class AuditEntry(SQLModel, table=True):
    """One admin action (API, CLI or dashboard), or an attempt that was refused."""

    __tablename__ = "audit_entry"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    source: str = Field(max_length=16)  # api | cli | dashboard
    client: str = Field(default="", max_length=64)  # the peer address (and X-Forwarded-For's first hop, if any)
    credential: str = Field(default="", max_length=64)  # which credential acted: "admin token 1a2b3c4d"
    action: str = Field(max_length=48, index=True)  # "rollout.pause", "device.pin", "release.publish"
    target: str = Field(default="", max_length=128)  # what it acted on: "rollout 3", "device dev-0001"
    detail: str = Field(default="", max_length=256)
    outcome: str = Field(default="ok", max_length=16)  # ok | refused (the request was understood, not done) | denied (credential)


class AuditEntryPublic(SQLModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    source: str
    client: str
    credential: str
    action: str
    target: str
    detail: str
    outcome: str


class AuditEntriesPublic(SQLModel):
    data: list[AuditEntryPublic]
    count: int


class WebhookEvent(StrEnum):
    ROLLOUT_HALTED = "rollout.halted"
    ROLLOUT_DONE = "rollout.done"
    MANIFEST_EXPIRING = "manifest.expiring"  # a channel's current manifest expires within a week


class Webhook(SQLModel, table=True):
    __tablename__ = "webhook"
    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=512)
    secret: str = Field(max_length=64)  # HMAC-SHA256 key; shown once when the hook is added
    events: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow)


class WebhookCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")
    url: str = PydanticField(max_length=512, description="http(s) URL that receives signed JSON posts")
    events: list[WebhookEvent] = PydanticField(default_factory=lambda: list(WebhookEvent), min_length=1, max_length=8)


class WebhookPublic(SQLModel):
    id: int
    url: str
    events: list[str]
    created_at: datetime
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    last_status: str = ""


class WebhookCreated(WebhookPublic):
    secret: str  # shown once


class WebhooksPublic(SQLModel):
    data: list[WebhookPublic]
    count: int


class WebhookDelivery(SQLModel, table=True):
    """A signed post owed to a webhook. ``dedupe`` makes an event enqueue once however many server
    processes notice it; the claim (``claimed_until``) makes one process at a time send it."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("webhook_id", "dedupe"),)
    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhook.id", index=True)
    event: str = Field(max_length=32)
    dedupe: str = Field(max_length=128)
    payload: str  # the JSON body, signed as sent
    state: str = Field(default="pending", max_length=16, index=True)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    claimed_until: datetime | None = None
    last_status: int | None = None  # HTTP status of the last attempt (None: no answer)
    last_error: str = Field(default="", max_length=256)
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


class WebhookDeliveryPublic(SQLModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    webhook_id: int
    event: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str
    created_at: datetime
    delivered_at: datetime | None


class WebhookDeliveriesPublic(SQLModel):
    data: list[WebhookDeliveryPublic]
    count: int
