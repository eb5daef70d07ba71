"""Device health in check-ins (X-Otaml-Rssi, -Free-Heap, -Min-Free-Heap, -Uptime-S, -Reset-Reason):
stored, shown, filterable; a value that does not fit what it lands in is refused whole (400, nothing
stored), whatever the device sends."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaml.core.types import parse_int
from tests.utils.devices import HttpDevice
from tests.utils.waiting import wait_for

HEALTHY = {"X-Otaml-Rssi": "-58", "X-Otaml-Free-Heap": "150000", "X-Otaml-Min-Free-Heap": "90000",
           "X-Otaml-Uptime-S": "86400", "X-Otaml-Reset-Reason": "poweron"}


@given(st.text(max_size=8))
@settings(max_examples=500, deadline=None)
def test_signed_integers_read_as_the_column_takes_them(text):
    value = parse_int(text, -128, 127)
    plain = text.isascii() and (text[1:] if text.startswith("-") else text).isdigit() and len(text.lstrip("-")) <= 3
    assert (value is not None) == (plain and -128 <= int(text) <= 127)
    if value is not None:
        assert value == int(text)


def devices(server, **params) -> set[str]:  # type: ignore[no-untyped-def]
    with server.admin() as admin:
        r = admin.get("/api/devices", params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    return {d["device_id"] for d in r.json()["data"]}


def test_health_is_stored_and_filterable(server):
    fleet = {
        "h-ok": HEALTHY,
        "h-weak": {**HEALTHY, "X-Otaml-Rssi": "-84"},
        "h-lowheap": {**HEALTHY, "X-Otaml-Min-Free-Heap": "12000"},
        "h-panic": {**HEALTHY, "X-Otaml-Reset-Reason": "panic", "X-Otaml-Uptime-S": "40"},
        "h-brownout": {**HEALTHY, "X-Otaml-Reset-Reason": "brownout"},
        "h-old": {},  # firmware from before the health headers
    }
    for device_id, headers in fleet.items():
        HttpDevice.enroll(server, device_id, extra=headers).poll()
    wait_for(lambda: devices(server, reset_reason="poweron") == {"h-ok", "h-weak", "h-lowheap"}, what="the flush")
    with server.admin() as admin:
        d = admin.get("/api/devices/h-panic").json()
        old = admin.get("/api/devices/h-old").json()
    assert (d["rssi"], d["free_heap"], d["min_free_heap"], d["uptime_s"], d["reset_reason"]) == (-58, 150000, 90000, 40, "panic")
    assert (old["rssi"], old["free_heap"], old["reset_reason"]) == (None, None, None)
    assert devices(server, rssi_below=-75) == {"h-weak"}
    assert devices(server, min_free_heap_below=20480) == {"h-lowheap"}
    assert devices(server, reset_reason="crash") == {"h-panic", "h-brownout"}
    assert devices(server, uptime_below=3600) == {"h-panic"}
    with server.admin() as admin:
        assert admin.get("/api/devices", params={"reset_reason": "meltdown"}).status_code == 422
        assert admin.get("/api/devices", params={"rssi_below": "-500"}).status_code == 422


BAD = [("X-Otaml-Rssi", "-129"), ("X-Otaml-Rssi", "128"), ("X-Otaml-Rssi", "--5"), ("X-Otaml-Rssi", "-"),
       ("X-Otaml-Rssi", "٣"), ("X-Otaml-Free-Heap", "4294967296"), ("X-Otaml-Min-Free-Heap", "-1"),
       ("X-Otaml-Uptime-S", "9223372036854775808"), ("X-Otaml-Reset-Reason", "PANIC"), ("X-Otaml-Reset-Reason", "")]


def test_a_health_value_that_does_not_fit_refuses_the_whole_checkin(server):
    dev = HttpDevice.enroll(server, "h-bad", extra=HEALTHY)
    for name, value in BAD:
        r = httpx.get(f"{server.url}/firmware.json", headers={**dev.auth, **HEALTHY, name: value.encode()})
        assert r.status_code == 400, (name, value, r.text)
        assert name in r.json()["detail"]
    with server.admin() as admin:
        assert admin.get("/api/devices/h-bad").json()["last_seen"] is None  # nothing of any of them was stored


@given(st.dictionaries(st.sampled_from(list(HEALTHY)), st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=24)))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_health_headers_get_a_4xx_or_are_stored_never_a_5xx(server, headers):
    if not hasattr(test_any_health_headers_get_a_4xx_or_are_stored_never_a_5xx, "dev"):
        test_any_health_headers_get_a_4xx_or_are_stored_never_a_5xx.dev = HttpDevice.enroll(server, "h-fuzz")  # type: ignore[attr-defined]
    dev = test_any_health_headers_get_a_4xx_or_are_stored_never_a_5xx.dev  # type: ignore[attr-defined]
    r = httpx.get(f"{server.url}/firmware.json", headers={**dev.auth, **{k: v.encode("latin-1") for k, v in headers.items()}})
    assert r.status_code in (400, 404), r.text
