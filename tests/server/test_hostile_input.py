"""Hostile values at every edge: the parsers (property-based, no server) and the classes of single
requests that used to answer 500 or store what every reader then tripped on (issue 10)."""

from __future__ import annotations

import json
import string
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaml.api.limits import MAX_JSON_DEPTH, check_json
from otaml.api.poll_asgi import range_of
from otaml.core.errors import BadRequestError
from otaml.core.types import CHANNEL, DEVICE_ID, INT32_MAX, INT64_MAX, TAG, VERSION, parse_uint
from otaml.dashboard import auth
from otaml.manifest.versions import Version
from otaml.releases.polling import BadCheckinError, checkin_from_headers
from tests.utils.devices import HttpDevice

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks almost right: digits of every script, signs, blanks, NUL, newlines, huge runs.
DIGITISH = st.one_of(
    st.text(alphabet="0123456789²³¹٣۴߀१੦０𝟎 +-_.\n\x00", max_size=30),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.integers(min_value=19, max_value=6000).map(lambda n: "9" * n),
    st.text(max_size=40),
)


# --- parsers ---------------------------------------------------------------------------------------


@FAST
@given(DIGITISH, st.sampled_from([INT32_MAX, INT64_MAX]))
def test_integers_are_ascii_digits_within_the_column(text, high):
    value = parse_uint(text, high)
    ascii_number = 0 < len(text) <= len(str(high)) and all(c in string.digits for c in text)  # no 30-digit spellings
    expected = int(text) if ascii_number and int(text) <= high else None
    assert value == expected


HEADER_COLUMNS = {  # header: (Checkin field, integer range or text width of its column)
    "x-otaml-manifest-version": ("manifest_version", INT64_MAX), "x-otaml-config-revision": ("config_revision", INT64_MAX),
    "x-otaml-secure-version": ("secure_version", INT32_MAX), "x-otaml-ml-latency-us": ("ml_latency_us", INT32_MAX),
    "x-otaml-version": ("version", 32), "x-otaml-partition": ("partition", 16), "x-otaml-model": ("ml_model", 48),
    "x-otaml-ml-counters": ("ml_counters", 400), "x-otaml-config-applied": ("reported_config", 400),
    "x-otaml-ota-state": ("ota_state", 16),
}


@FAST
@given(st.sampled_from(sorted(HEADER_COLUMNS)), st.one_of(
    DIGITISH, st.text(alphabet=st.characters(max_codepoint=255), max_size=80),
    st.integers(min_value=0, max_value=2**64).map(str),  # around both column ranges
    st.sampled_from(["valid", "healthy=1,unstable=2", "alert_threshold=80", "ota_0", "1.2.3"]),
))
def test_checkin_headers_either_fit_their_columns_or_are_refused_by_name(header, value):
    field, limit = HEADER_COLUMNS[header]
    try:
        c = checkin_from_headers({header: value}, "dev-1", "stable")
    except BadCheckinError as e:
        assert str(e).lower().startswith(header)
        return
    v = getattr(c, field)
    if isinstance(v, int):
        assert 0 <= v <= limit
    else:
        assert len(v) <= limit and v.isascii() and "\x00" not in v and "\n" not in v


@FAST
@given(st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", DIGITISH, DIGITISH),
    st.text(max_size=60),
    st.integers(min_value=1, max_value=8000).map(lambda n: "bytes=" + "7" * n + "-"),
    st.integers(min_value=1, max_value=8000).map(lambda n: "bytes=-" + "7" * n),
), st.integers(min_value=1, max_value=4 * 1024 * 1024))
def test_range_header_never_raises_and_stays_inside_the_blob(spec, size):
    r = range_of(spec, size)
    if isinstance(r, tuple):
        start, end = r
        assert 0 <= start < end <= size


@FAST
@given(st.one_of(st.text(max_size=80), DIGITISH.map(lambda d: f"{d}.{'0' * 64}"),
                 st.integers(min_value=13, max_value=6000).map(lambda n: "9" * n + "." + "a" * 64)))
def test_a_session_cookie_is_valid_only_if_this_server_signed_it(cookie):
    assert auth.valid_session("k" * 32, cookie) is False
    good = auth.new_session("k" * 32)
    assert auth.valid_session("k" * 32, good) and not auth.valid_session("k" * 32, good + "\n")


@FAST
@given(st.one_of(st.text(max_size=24), st.from_regex(VERSION.pattern, fullmatch=True)))
def test_version_text_is_matched_whole(text):
    if VERSION.ok(text):
        assert Version.parse(text).text == text and text.strip() == text
    assert not VERSION.ok(text + "\n") and not VERSION.ok(text + "\x00")


@FAST
@given(st.data(), st.sampled_from([DEVICE_ID, TAG, CHANNEL]))
def test_no_identifier_admits_a_newline_nul_or_non_ascii(data, rule):
    text = data.draw(st.one_of(st.text(max_size=70), st.from_regex(rule.pattern, fullmatch=True)))
    if rule.ok(text):
        assert text.isascii() and text.isprintable() and " " not in text
    assert not rule.ok(text + "\n") and not rule.ok("\x00" + text)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30,
)


@FAST
@given(JSON, st.integers(min_value=0, max_value=3 * MAX_JSON_DEPTH))
def test_json_bodies_are_refused_by_depth_before_parsing(value, depth):
    body = ("[" * depth + json.dumps(value) + "]" * depth).encode()
    try:
        check_json(body)
        accepted = True
    except BadRequestError as e:
        accepted = False
        assert "nested at most" in str(e) or "integers of at most" in str(e)
    if accepted:
        assert depth <= MAX_JSON_DEPTH


@FAST
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_json_or_a_named_400(body):
    try:
        check_json(body)
    except BadRequestError as e:
        assert str(e).startswith("body: expected")


# --- single requests against the real server --------------------------------------------------------



@pytest.fixture
def fleet(server, cli, make_image):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    devices = [HttpDevice.enroll(server, f"dev-{i}") for i in range(3)]
    for d in devices:
        assert d.poll().status_code == 200
    return devices


def reads_all_answer(server, device: HttpDevice) -> None:
    """Every read path that touches device rows: polls, the device and drift APIs, every dashboard page."""
    assert device.poll().status_code == 200
    with server.admin() as admin:
        for path in ["/api/devices", "/api/devices?drift=any", f"/api/devices/{device.device_id}",
                     f"/api/devices/{device.device_id}/state", "/api/rollouts", "/api/info"]:
            r = admin.get(path)
            assert r.status_code == 200, (path, r.text)
    cookie = {"Cookie": f"{auth.COOKIE}={auth.new_session(server.admin_token)}"}
    for path in ["/dashboard", "/dashboard/devices", f"/dashboard/devices/{device.device_id}", "/dashboard/fragments/overview"]:
        r = httpx.get(server.url + path, headers=cookie)
        assert r.status_code == 200, (path, r.text[:300])


@pytest.mark.e2e
def test_null_and_odd_values_cannot_be_stored_and_stored_ones_cannot_break_a_read(server, fleet):
    d = fleet[0]
    with server.admin() as admin:
        for body in [{"tags": None}, {"pin_version": None}, {"hold": None}, {"tags": ["x\n"]}, {"pin_version": "1.1\n"},
                     {"tags": ["a\x00"]}, {"tags": [f"t{i}" for i in range(13)]}]:
            r = admin.patch(f"/api/devices/{d.device_id}", json=body)
            assert r.status_code == 422 and r.json()["error"] == "FieldError", (body, r.text)
            assert r.json()["detail"].startswith("invalid "), r.text
        for device_id in ["dev\n", "dev\x00", "d" * 65, "dév"]:
            r = admin.post("/api/devices", json={"device_id": device_id})
            assert r.status_code == 422 and "device_id" in r.json()["detail"], r.text
    assert server.query("select tags, pin_version from device where device_id='dev-0'") == [("[]", None)]
    # Values an older server, a hand edit or a bug could have left behind: every reader still answers.
    _write(server, "update device set tags='null', ml_counters='{\"a\": \"x\"}', reported_config='[1' "
                   "where device_id='dev-0'")
    _write(server, "update device set tags='{\"not\": \"a list\"}' where device_id='dev-1'")
    time.sleep(0.5)
    reads_all_answer(server, d)
    reads_all_answer(server, fleet[1])


def _write(server, sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(server.db_url())
    with engine.begin() as conn:
        conn.execute(text(sql))
        conn.execute(text("update fleet_revision set policy = policy + 1"))  # every process reloads its policy
    engine.dispose()


@pytest.mark.e2e
@pytest.mark.parametrize("cookie", ["1²." + "0" * 64, "9" * 5000 + "." + "0" * 64, "٣." + "a" * 64, "1.", "." * 3000])
def test_a_forged_dashboard_cookie_is_a_login_redirect(server, cookie):
    for path in ["/dashboard", "/dashboard/devices", "/dashboard/fragments/overview"]:
        raw = f"{auth.COOKIE}={cookie}"
        # The server reads header bytes as latin-1: send "²" as the one byte it then sees as "²".
        r = httpx.get(server.url + path, headers={"Cookie": raw.encode("latin-1" if max(raw) <= "\xff" else "utf-8")})
        assert r.status_code == 303 and "/dashboard/login" in r.headers["location"], (path, r.status_code)


@pytest.mark.e2e
def test_events_refuse_non_json_numbers_bad_bytes_nul_and_big_bodies(server, fleet):
    d = fleet[0]
    url = f"{server.url}/api/devices/{d.device_id}/events"
    headers = {**d.auth, "Content-Type": "application/json"}
    for raw, status in [(b'{"kind": NaN}', 400), (b'{"kind": "booted", "detail": 1e999}', 400), (b"\xff\xfe{}", 400),
                        (b'{"kind": Infinity}', 400), (b'{"kind": "booted", "kind": "confirmed"}', 400),
                        (b'{"kind": "booted", "detail": "a\\u0000b"}', 422), (b'{"kind": "booted", "version": "1.2\\u0000"}', 422),
                        (b'{"kind": "booted", "detail": "\\ud800"}', 422), (b'{"kind": "booted", "version": "1.2\\n"}', 422),
                        (b'{"kind": "booted", "detail": "' + b"x" * 10_000_000 + b'"}', 413)]:
        r = httpx.post(url, headers=headers, content=raw, timeout=30)
        assert r.status_code == status, (raw[:60], r.status_code, r.text[:200])
        assert r.json()["detail"], r.text
    assert server.query(f"select count(*) from device_event where device_id='{d.device_id}'") == [(0,)]


@pytest.mark.e2e
def test_ids_beyond_their_column_are_a_4xx(server, fleet):
    with server.admin() as admin:
        for rollout_id in ["9" * 30, str(2**63), str(2**31), "0", "-1", "1²"]:
            for r in [admin.get(f"/api/rollouts/{rollout_id}"), admin.post(f"/api/rollouts/{rollout_id}/pause")]:
                assert r.status_code == 422 and "rollout_id" in r.json()["detail"], (rollout_id, r.text)
        for params in [{"seen_within": 10**30}, {"skip": 2**63}, {"q": "a\x00"}, {"channel": "x" * 40}, {"tag": "A"},
                       {"version": "é"}, {"state": "sleepy"}]:
            r = admin.get("/api/devices", params=params)
            assert r.status_code == 422, (params, r.text)
        r = admin.get("/api/devices/dev%00x")
        assert r.status_code == 422
    assert httpx.get(f"{server.url}/dashboard/devices/dev%00x", headers={
        "Cookie": f"{auth.COOKIE}={auth.new_session(server.admin_token)}"}).status_code == 404


@pytest.mark.e2e
def test_a_checkin_for_a_channel_that_cannot_exist_records_nothing(server, fleet):
    d = fleet[2]
    for channel in ["a" * 40, "a%00b", "Stable", "%C3%A9t%C3%A9"]:
        r = httpx.get(f"{server.url}/channels/{channel}/firmware.json",
                      headers={**d.auth, "X-Otaml-Version": "9.9"})
        assert r.status_code == 404, (channel, r.text)
    time.sleep(0.6)  # two flush intervals
    assert server.query("select channel, version from device where device_id='dev-2'") == [("stable", "1.1")]
