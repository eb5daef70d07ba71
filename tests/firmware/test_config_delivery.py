"""A desired-config document the server builds and signs is read by the device core's strict parser
(otaml_config.c) and applied: the real server, the real simulator."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_the_simulator_applies_the_servers_signed_config_document(cli, enroll, make_image, device_state):
    image = make_image("1.1")
    assert cli("publish", "1.1", str(image)).returncode == 0
    r = cli("config", "set", "channel", "stable", "ml_interval_ms=250", "alert_threshold=80")
    assert r.returncode == 0, r.stderr
    dev = enroll("dev-cfg")
    dev.flash_image(image)
    log = dev.run(3, 200)
    assert "config revision" in log and "applied: alert_threshold=80,ml_interval_ms=250" in log, log
    state = device_state("dev-cfg")
    assert state["reported_config"] == {"alert_threshold": 80, "ml_interval_ms": 250}
    assert state["config_revision"] >= 1  # what it applied, reported back in its check-in
