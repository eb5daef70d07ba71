"""A device at the HTTP level, for server tests that need many devices and no firmware: it polls with
check-in headers and reports events the way the firmware does (manifests/README.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import httpx


def ring_bucket(device_id: str) -> int:
    """Written again here, not imported, so ring assertions check the server independently; the formula is
    pinned against a table computed outside Python (tests/server/test_ring_buckets.py)."""
    return int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big") % 10000


@dataclass
class HttpDevice:
    url: str
    device_id: str
    token: str
    version: str = "1.1"
    channel: str = "stable"
    config_revision: int | None = None
    applied: dict[str, int] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # more check-in headers, e.g. ML counters
    last: httpx.Response | None = None

    @classmethod
    def enroll(cls, server, device_id: str, **kw) -> HttpDevice:  # type: ignore[no-untyped-def]
        with server.admin() as admin:
            r = admin.post("/api/devices", json={"device_id": device_id})
        assert r.status_code == 201, r.text
        return cls(server.url, device_id, r.json()["token"], **kw)

    @property
    def auth(self) -> dict[str, str]:
        return {"X-Otaml-Device-Id": self.device_id, "Authorization": f"Bearer {self.token}"}

    def poll(self) -> httpx.Response:
        headers = {**self.auth, "X-Otaml-Version": self.version, "X-Otaml-Ota-State": "valid", **self.extra}
        if self.config_revision is not None:
            headers["X-Otaml-Config-Revision"] = str(self.config_revision)
            headers["X-Otaml-Config-Applied"] = ",".join(f"{k}={v}" for k, v in sorted(self.applied.items()))
        path = "/firmware.json" if self.channel == "stable" else f"/channels/{self.channel}/firmware.json"
        self.last = httpx.get(self.url + path, headers=headers)
        return self.last

    def offered(self) -> str | None:
        """The version the server offers this device now (semver of the manifest it gets)."""
        r = self.poll()
        return json.loads(r.content)["semver"] if r.status_code == 200 else None

    def report(self, kind: str, version: str, reason: str = "ok", detail: str = "") -> None:
        r = httpx.post(
            f"{self.url}/api/devices/{self.device_id}/events", headers=self.auth,
            json={"kind": kind, "version": version, "reason": reason, "detail": detail},
        )
        assert r.status_code == 201, r.text

    def update_to(self, version: str) -> None:
        for kind in ("download_started", "verified", "installed", "booted", "confirmed"):
            self.report(kind, version)
        self.version = version

    def fail(self, version: str, reason: str = "self_test_failed") -> None:
        for kind in ("download_started", "verified", "installed", "booted"):
            self.report(kind, version)
        self.report("rolled_back", version, reason, "self-test: sensor bus did not answer")
