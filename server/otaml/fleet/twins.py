"""Desired next to reported state, per device and as a fleet-wide filter.

Desired firmware is what the poll path would offer (FleetPolicy.choose); desired configuration is the
merge of the device's config layers at the current config revision. Reported state is the latest
check-in. The same rules are written once in Python (for one device) and once as SQL (to filter 100k
devices in one query); a test compares the two.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import and_, case, false, or_
from sqlmodel import Session, select

from otaml.fleet import stored
from otaml.models import Device, DeviceState, RolloutState
from otaml.rollouts.policy import FleetPolicy, newer
from otaml.rollouts.progress import narrowed_by, rolled_back_devices


class Drift(StrEnum):
    ANY = "any"
    FIRMWARE = "firmware"
    CONFIG = "config"


def device_state(policy: FleetPolicy, device: Device) -> DeviceState:
    if device.channel is None:
        desired, because = None, "unknown channel (never polled)"
    else:
        choice = policy.choose(device.channel, device.device_id, device.version)
        desired, because = choice.version, choice.because
    desired_config = policy.desired_config(device.channel, device.device_id)
    revision = policy.revision[1]
    reported = stored.properties(device.reported_config)
    return DeviceState(
        device_id=device.device_id,
        desired_version=desired,
        desired_because=because,
        reported_version=device.version,
        desired_config=desired_config,
        desired_config_revision=revision,
        reported_config=reported,
        reported_config_revision=device.config_revision,
        firmware_differs=desired is not None and device.version != desired,
        config_differs=revision > 0 and (device.config_revision or 0) < revision,
    )


def _desired_version_sql(policy: FleetPolicy, channel: str, baseline: str | None):  # type: ignore[no-untyped-def]
    """FleetPolicy.choose in SQL: pin, hold, a staged version the device runs unless what it would be
    offered (the rollout in its ring, else the baseline) is newer, the rollout, the baseline."""
    whens = [
        (Device.pin_version.is_not(None), Device.pin_version),  # type: ignore[union-attr]
        (Device.hold == True, Device.version),  # noqa: E712
    ]
    staged = [v for (c, v) in policy.staged if c == channel]
    rollout = policy.rollouts.get(channel)
    if rollout is not None and rollout.state == RolloutState.RUNNING:
        conds = [Device.bucket < rollout.bound, *narrowed_by(rollout.tags, rollout.devices)]
        conds.append(Device.device_id.not_in(rolled_back_devices(rollout.version)))  # type: ignore[attr-defined]
        in_rollout = and_(*conds)
        keep = [v for v in staged if not newer(rollout.version, v)]
        if keep:
            whens.append((and_(in_rollout, Device.version.in_(keep)), Device.version))  # type: ignore[union-attr]
        whens.append((in_rollout, rollout.version))
    keep = [v for v in staged if not newer(baseline, v)]
    if keep:
        whens.append((Device.version.in_(keep), Device.version))  # type: ignore[union-attr]
    return case(*whens, else_=baseline)


def firmware_differs_sql(session: Session, policy: FleetPolicy):  # type: ignore[no-untyped-def]
    channels = set(session.exec(select(Device.channel).where(Device.channel.is_not(None)).distinct()).all())  # type: ignore[union-attr]
    per_channel = []
    for channel in channels:
        baseline, _ = policy.baselines.get(channel, (None, None))  # type: ignore[arg-type]
        desired = _desired_version_sql(policy, channel, baseline)  # type: ignore[arg-type]
        per_channel.append(and_(Device.channel == channel, desired.is_not(None), Device.version.is_distinct_from(desired)))  # type: ignore[union-attr]
    return or_(*per_channel) if per_channel else false()


def config_differs_sql(policy: FleetPolicy):  # type: ignore[no-untyped-def]
    revision = policy.revision[1]
    if revision == 0:
        return false()
    return or_(Device.config_revision.is_(None), Device.config_revision < revision)  # type: ignore[union-attr, operator]


def drift_condition(session: Session, policy: FleetPolicy, drift: Drift):  # type: ignore[no-untyped-def]
    if drift == Drift.FIRMWARE:
        return firmware_differs_sql(session, policy)
    if drift == Drift.CONFIG:
        return config_differs_sql(policy)
    return or_(firmware_differs_sql(session, policy), config_differs_sql(policy))


