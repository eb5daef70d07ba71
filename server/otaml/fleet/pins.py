"""Operator sanity for pins: a pin names a release the device can actually take.

A pin to a version that is not a release of the device's channel offers the device nothing (its polls
answer 404); a pin below what it runs is refused by the device as a replayed manifest, which a rollout
then counts as a failure. Both are refused unless the operator gives a reason (``force_reason``).
"""

from __future__ import annotations

import logging

from sqlmodel import Session, select

from otaml.core.errors import OtamlError, PinError
from otaml.manifest.versions import Version
from otaml.models import Device, Release

log = logging.getLogger(__name__)


def check_pin(session: Session, device: Device, version: str, force_reason: str | None) -> None:
    """Raises PinError naming what is wrong and how to force it."""
    problem = _problem(session, device, version)
    if problem is None:
        return
    if force_reason:
        log.warning("pin of %s to %s forced (%s): %s", device.device_id, version, problem, force_reason)
        return
    raise PinError(f"cannot pin {device.device_id} to {version}: {problem}; pass --force REASON to pin it anyway")


def _problem(session: Session, device: Device, version: str) -> str | None:
    if device.channel is None:
        return "it has not polled yet, so its channel is unknown"
    exists = session.exec(
        select(Release.id).where(Release.channel == device.channel, Release.version == version)
    ).first()
    if exists is None:
        return f"{version} is not a release of its channel {device.channel!r}"
    try:
        running = Version.parse(device.version) if device.version else None
    except OtamlError:
        running = None  # it reports something that is not a release version: nothing to compare
    if running is not None and Version.parse(version) < running:
        return f"it runs {device.version}, and a device refuses an older manifest as replayed"
    return None
