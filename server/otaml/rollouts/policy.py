"""The fleet policy each server process keeps in memory for the poll path: which signed manifest a
device is offered (pin, hold, rollout or the channel's baseline) and which configuration it should run.
It is the poll path's only cache: publishes, refreshes and rollout decisions all bump the fleet
revision.

A snapshot is rebuilt from the database when the fleet revision moved (checked at most every
``ttl`` seconds, one indexed read), so polls never query per device and all processes converge
within the TTL after any change.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from otaml.core.errors import OtamlError
from otaml.fleet import config as cfg
from otaml.fleet import revision, stored
from otaml.models import ConfigLayer, ConfigScope, Device, Manifest, Release, Rollout, RolloutState
from otaml.models import ACTIVE_ROLLOUT_STATES
from otaml.manifest.versions import Version
from otaml.releases.serving import ServedManifest, served
from otaml.rollouts import rings
from otaml.rollouts.progress import rolled_back_devices


@dataclass(frozen=True)
class ActiveRollout:
    id: int
    version: str
    state: str
    stage: int
    bound: int  # devices with a lower bucket are in the offered rings
    tags: frozenset[str]
    devices: frozenset[str]
    failed: frozenset[str]  # rolled back this version (not for an unreachable server): never offered it again
    manifest: ServedManifest

    def offers(self, device_id: str, device_tags: frozenset[str]) -> bool:
        return (
            self.state == RolloutState.RUNNING
            and rings.bucket(device_id) < self.bound
            and device_id not in self.failed
            and rings.matches(device_id, device_tags, self.tags, self.devices)
        )


@dataclass(frozen=True)
class Choice:
    manifest: ServedManifest | None  # None: that version has no manifest on the channel (or nothing is published)
    because: str  # pin | hold | staged | rollout | baseline
    version: str | None = None


def newer(candidate: str | None, running: str) -> bool:
    """Whether ``candidate`` is a version above ``running`` (False when either is not a version)."""
    if candidate is None:
        return False
    try:
        return Version.parse(candidate) > Version.parse(running)
    except OtamlError:
        return False


@dataclass
class FleetPolicy:
    revision: tuple[int, int] = (0, 0)
    rollouts: dict[str, ActiveRollout] = field(default_factory=dict)  # by channel
    staged: dict[tuple[str, str], ServedManifest] = field(default_factory=dict)  # (channel, version)
    releases: dict[tuple[str, str], ServedManifest] = field(default_factory=dict)  # newest manifest per release
    baselines: dict[str, tuple[str, ServedManifest]] = field(default_factory=dict)  # channel: (version, manifest)
    pins: dict[str, str] = field(default_factory=dict)
    holds: frozenset[str] = frozenset()
    tags: dict[str, frozenset[str]] = field(default_factory=dict)
    layers: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # (scope, name)

    def device_tags(self, device_id: str) -> frozenset[str]:
        return self.tags.get(device_id, frozenset())

    def choose(self, channel: str, device_id: str, running: str | None) -> Choice:
        """Which manifest this device is offered. Order: pin, hold, the staged version it already runs
        (so a device that took a rollout's release keeps seeing that manifest, not an older baseline it
        would refuse as replayed) unless the rollout or the baseline now offers a newer one, the
        rollout, the baseline."""
        pin = self.pins.get(device_id)
        if pin is not None:
            return Choice(self.releases.get((channel, pin)), "pin", pin)
        if device_id in self.holds:
            return Choice(self.releases.get((channel, running or "")), "hold", running)
        offer = self._offer(channel, device_id)
        if running is not None:
            keep = self.staged.get((channel, running))
            # A device on a staged release whose rollout was aborted or halted is not stranded there:
            # the next rollout, or a newer baseline, reaches it like any other device.
            if keep is not None and not newer(offer.version, running):
                return Choice(keep, "staged", running)
        return offer

    def _offer(self, channel: str, device_id: str) -> Choice:
        rollout = self.rollouts.get(channel)
        if rollout is not None and rollout.offers(device_id, self.device_tags(device_id)):
            return Choice(rollout.manifest, "rollout", rollout.version)
        version, manifest = self.baselines.get(channel, (None, None))
        return Choice(manifest, "baseline", version)

    def desired_config(self, channel: str | None, device_id: str) -> dict[str, int | str]:
        tag_layers = [self.layers.get((ConfigScope.TAG, t)) for t in sorted(self.device_tags(device_id))]
        return cfg.merge(
            [self.layers.get((ConfigScope.CHANNEL, channel or "")), *tag_layers, self.layers.get((ConfigScope.DEVICE, device_id))]
        )


def load(session: Session) -> FleetPolicy:
    policy = FleetPolicy(revision=revision.current(session))
    newest: dict[int, Manifest] = {}
    for m in session.exec(select(Manifest).order_by(Manifest.manifest_version)).all():  # type: ignore[arg-type]
        newest[m.release_id] = m
    releases = {r.id: r for r in session.exec(select(Release)).all()}
    for release_id, m in sorted(newest.items()):  # by release: a channel's newest non-staged one is its baseline
        release = releases[release_id]
        s = served(m)
        policy.releases[(release.channel, release.version)] = s
        if release.staged:
            policy.staged[(release.channel, release.version)] = s
        else:
            policy.baselines[release.channel] = (release.version, s)
    for ro in session.exec(select(Rollout).where(Rollout.state.in_(ACTIVE_ROLLOUT_STATES))).all():  # type: ignore[attr-defined]
        manifest = policy.staged.get((ro.channel, ro.version))
        if manifest is None:
            continue
        failed = session.exec(rolled_back_devices(ro.version).distinct()).all()
        policy.rollouts[ro.channel] = ActiveRollout(
            id=ro.id, version=ro.version, state=ro.state, stage=ro.stage,  # type: ignore[arg-type]
            bound=ro.bounds[ro.stage] if len(ro.bounds) > ro.stage else 0,  # no bound yet: nobody
            tags=frozenset(ro.tags), devices=frozenset(ro.devices), failed=frozenset(failed), manifest=manifest,
        )
    for device_id, pin, hold, tags in session.exec(
        select(Device.device_id, Device.pin_version, Device.hold, Device.tags).where(  # type: ignore[call-overload]
            (Device.pin_version.is_not(None)) | (Device.hold == True) | (Device.tags != "[]")  # type: ignore[union-attr]  # noqa: E712
        )
    ).all():
        if pin:
            policy.pins[device_id] = pin
        if tags != "[]":
            policy.tags[device_id] = frozenset(stored.tags(tags))  # never fails on a stored value
    policy.holds = frozenset(
        session.exec(select(Device.device_id).where(Device.hold == True)).all()  # noqa: E712
    )
    for layer in session.exec(select(ConfigLayer)).all():
        policy.layers[(layer.scope, layer.name)] = dict(layer.properties)
    return policy


class PolicyCache:
    """The current FleetPolicy for this process.

    Past its TTL a snapshot is still served while one background refresh runs (a poll never waits for
    the database, and a burst of polls never queues behind one). Past three TTLs (a process nobody
    polled for a while) the next reader waits: an idle process must not answer with an hour-old
    rollout. A change made through this process (``invalidate``) also makes the next reader wait, so
    an operator's pause takes effect here at once."""

    def __init__(self, engine: Engine, ttl: float = 2.0):
        self._engine = engine
        self._ttl = ttl
        self._lock = threading.Lock()
        self._policy = FleetPolicy(revision=(-1, -1))
        self._checked = -1e9
        self._valid = False  # False until loaded, and after invalidate()
        self._refreshing = False

    def peek(self) -> tuple[FleetPolicy | None, bool]:
        """(snapshot, needs_refresh) for the event loop, without I/O. The snapshot is None when the
        caller must wait for ``get``; needs_refresh is True for exactly one caller per stale period,
        which should run ``get`` in the background."""
        age = time.monotonic() - self._checked
        if not self._valid or age >= 3 * self._ttl:
            return None, False
        if age < self._ttl or self._refreshing:
            return self._policy, False
        self._refreshing = True
        return self._policy, True

    def get(self) -> FleetPolicy:
        """The fresh snapshot; may read the database (call it from a worker thread)."""
        try:
            with self._lock:
                if self._valid and time.monotonic() - self._checked < self._ttl:
                    return self._policy
                with Session(self._engine) as session:
                    if not self._valid or revision.current(session) != self._policy.revision:
                        self._policy = load(session)
                self._checked = time.monotonic()
                self._valid = True
                return self._policy
        finally:
            self._refreshing = False

    def invalidate(self) -> None:
        self._valid = False
