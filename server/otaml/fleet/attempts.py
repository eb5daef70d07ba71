"""Update events grouped into update attempts: one row per device and try, with its outcome.

A device reports up to eight events for one update (download_started, download_progress x3, verified,
installed, booted, confirmed); a list of them buries what matters at fleet scale. An attempt is a run
of one device's events about one version, ended by an outcome (confirmed, rolled_back, rejected); the
next event about that version after an outcome starts a new attempt (a retake after an unreachable
server, a retried download). An attempt without an outcome is in flight and says where it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from otaml.fleet.protocol import EventKind
from otaml.models import DeviceEvent

OUTCOMES = {EventKind.CONFIRMED, EventKind.ROLLED_BACK, EventKind.REJECTED}
_PCT = re.compile(r"([0-9]{1,3})%")

IN_FLIGHT = {
    EventKind.DOWNLOAD_STARTED: "downloading",
    EventKind.DOWNLOAD_FAILED: "download interrupted (resumes at the next poll)",
    EventKind.VERIFIED: "verified",
    EventKind.INSTALLED: "installed, rebooting",
    EventKind.BOOTED: "booted, confirming",
}


@dataclass
class Attempt:
    device_id: str
    version: str
    started_at: datetime
    updated_at: datetime
    kinds: list[str] = field(default_factory=list)
    outcome: str = ""  # confirmed | rolled_back | rejected | "" (in flight)
    reason: str = "ok"
    detail: str = ""
    progress: int | None = None  # percent of the image in flash, from download_progress

    @property
    def failed(self) -> bool:
        return self.outcome in (EventKind.ROLLED_BACK, EventKind.REJECTED)

    @property
    def state(self) -> str:
        """For people: the outcome, or where an attempt in flight is."""
        if self.outcome:
            return self.outcome.replace("_", " ")
        last = self.kinds[-1] if self.kinds else ""
        if last == EventKind.DOWNLOAD_PROGRESS and self.progress is not None:
            return f"downloading {self.progress}%"
        return IN_FLIGHT.get(last, last)  # type: ignore[call-overload]


def group(events: Iterable[DeviceEvent]) -> list[Attempt]:
    """Attempts, newest first (by their latest event)."""
    by_device: dict[str, list[DeviceEvent]] = {}
    for e in events:
        by_device.setdefault(e.device_id, []).append(e)
    attempts: list[tuple[int, Attempt]] = []
    for device_id, evts in by_device.items():
        current: Attempt | None = None
        last_id = 0
        for e in sorted(evts, key=lambda x: x.id or 0):
            version = e.version or ""
            if current is None or current.version != version or current.outcome:
                if current is not None:
                    attempts.append((last_id, current))
                current = Attempt(device_id, version, e.created_at, e.created_at)
            current.kinds.append(e.kind)
            current.updated_at = e.created_at
            last_id = e.id or 0
            if e.kind in OUTCOMES:
                current.outcome, current.reason, current.detail = e.kind, e.reason, e.detail
            elif e.kind == EventKind.DOWNLOAD_PROGRESS:
                m = _PCT.match(e.detail or "")
                current.progress = min(int(m.group(1)), 100) if m else current.progress
            elif e.kind == EventKind.DOWNLOAD_FAILED:
                current.reason, current.detail = e.reason, e.detail
        if current is not None:
            attempts.append((last_id, current))
    return [a for _, a in sorted(attempts, key=lambda x: -x[0])]
