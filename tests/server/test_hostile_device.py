"""One hostile device among good ones (SQLite, and PostgreSQL with --postgres): while 20 devices poll,
one enrolled device sends generated malformed check-ins. Every good check-in lands, the hostile one
gets 400s (or 404 for a channel that cannot exist), and nothing answers 5xx. Then the batched flush
itself: a row the database refuses is dropped alone, and the others are stored."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaml.core.config import Settings
from otaml.core.db import init_db, make_engine
from otaml.fleet.checkins import Checkin, CheckinBuffer
from otaml.models import Device
from tests.utils.devices import HttpDevice

pytestmark = pytest.mark.e2e

# Each integer header and the largest value it may carry: the range of the column it lands in
# (PostgreSQL's int4 or int8), or the protocol's own (secure_version is esp_app_desc_t's uint32).
INT_HEADERS = {"X-Otaml-Manifest-Version": 2**63 - 1, "X-Otaml-Secure-Version": 2**32 - 1,
               "X-Otaml-Ml-Latency-Us": 2**31 - 1, "X-Otaml-Config-Revision": 2**63 - 1}
TEXT_HEADERS = {"X-Otaml-Version": 32, "X-Otaml-Partition": 16, "X-Otaml-Model": 48}


def _latin1(text: str) -> bytes:
    # HTTP strips blanks around a header value (and clients refuse to send them): never generate them.
    # Control characters cannot be sent in a header at all: they become 0x80 (obs-text, which HTTP
    # carries and no header of the protocol accepts), so the value stays malformed.
    text = "".join("\x80" if ord(c) < 0x20 or c == "\x7f" else c for c in text.strip(" \t"))
    return text.encode("latin-1", "replace")


# Malformed on purpose: each value is wrong for its header (the strategy never produces a valid one).
def bad_int(high: int):  # type: ignore[no-untyped-def]
    return st.one_of(st.integers(min_value=high + 1, max_value=2**80).map(str), BAD_INT)  # beyond the column


BAD_INT = st.one_of(
    st.integers(min_value=-(2**40), max_value=-1).map(str),
    st.text(alphabet="²³¹٣۴१०𝟎", min_size=1, max_size=5),  # digits that are not ASCII
    st.integers(min_value=20, max_value=5000).map(lambda n: "9" * n),
    st.sampled_from(["", "1.0", "0x10", "1e3", "+1", "1 1", "1_000"]),
)
BAD_TEXT = st.one_of(
    st.integers(min_value=49, max_value=4000).map(lambda n: "v" * n),  # longer than any of the columns
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=10),
    st.sampled_from(["", "1.2\x7f", "caf\xe9"]),
)


@st.composite
def malformed_checkin(draw) -> tuple[str, dict[str, bytes]]:
    """(path, headers): one thing wrong at least, perhaps more."""
    kind = draw(st.sampled_from(["int", "text", "state", "counters", "config", "channel"]))
    headers: dict[str, bytes] = {}
    path = "/firmware.json"
    if kind == "int":
        name = draw(st.sampled_from(sorted(INT_HEADERS)))
        headers[name] = _latin1(draw(bad_int(INT_HEADERS[name])))
    elif kind == "text":
        name = draw(st.sampled_from(sorted(TEXT_HEADERS)))
        value = draw(BAD_TEXT)
        if value.isascii() and 0 < len(value) <= TEXT_HEADERS[name] and value.isprintable():
            value += "\x7f"
        headers[name] = _latin1(value)
    elif kind == "state":
        headers["X-Otaml-Ota-State"] = _latin1(draw(st.text(max_size=20).filter(
            lambda s: s not in {"new", "pending_verify", "valid", "invalid", "aborted", "undefined"})))
    elif kind == "counters":
        headers["X-Otaml-Ml-Counters"] = _latin1(draw(st.one_of(
            st.integers(min_value=9, max_value=40).map(lambda n: ",".join(f"c{i}=1" for i in range(n))),
            st.sampled_from(["healthy=", "=3", "Healthy=1", "healthy=²", "healthy=12345678901", "a=1,,b=2"]),
        )))
    elif kind == "config":
        headers["X-Otaml-Config-Revision"] = b"1"
        headers["X-Otaml-Config-Applied"] = _latin1(draw(st.sampled_from(
            ["brightness=3", "alert_threshold=", "alert_threshold=²", "alert_threshold=99999999999", "x"])))
    else:
        path = "/channels/" + draw(st.sampled_from(["a" * 40, "a%00b", "Stable", "%0A", "b" * 33, "s%20t"])) + "/firmware.json"
    # Sometimes garnish with valid headers, so a bad one must be found among good ones.
    if draw(st.booleans()):
        headers.setdefault("X-Otaml-Version", b"6.6")
        headers.setdefault("X-Otaml-Ota-State", b"valid")
    return path, headers


def test_one_hostile_device_cannot_stop_the_others(server, cli, make_image):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    good = [HttpDevice.enroll(server, f"good-{i:02d}", version="1.0") for i in range(20)]
    hostile = HttpDevice.enroll(server, "hostile")
    statuses: list[int] = []
    rounds = {"n": 0}
    stop = threading.Event()

    def poll_forever(devices: list[HttpDevice]) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                rounds["n"] += 1
                for d in devices:
                    d.version = f"1.{rounds['n'] % 50}"
                    r = http.get("/firmware.json", headers={**d.auth, "X-Otaml-Version": d.version,
                                                            "X-Otaml-Ota-State": "valid", "X-Otaml-Secure-Version": "1",
                                                            "X-Otaml-Manifest-Version": str(2**62)})
                    statuses.append(r.status_code)

    pollers = [threading.Thread(target=poll_forever, args=(good[i::2],)) for i in range(2)]
    for t in pollers:
        t.start()
    hostile_statuses: list[int] = []
    http = httpx.Client(base_url=server.url, timeout=30)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(malformed_checkin())
    def attack(case):
        path, headers = case
        r = http.get(path, headers={**{k: v.encode() for k, v in hostile.auth.items()}, **headers})
        hostile_statuses.append(r.status_code)
        assert r.status_code in (400, 404), (path, headers, r.status_code, r.text[:200])
        if r.headers.get("content-type") == "application/json":  # else the HTTP layer refused the header itself
            assert r.json()["detail"], r.text

    try:
        attack()
    finally:
        stop.set()
        for t in pollers:
            t.join()
        http.close()
    assert len(hostile_statuses) >= 150 and 400 in hostile_statuses
    assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
    # The last check-in of every good device is stored (readers flush first), exactly as sent.
    with server.admin() as admin:
        listed = {d["device_id"]: d for d in admin.get("/api/devices", params={"limit": 1000}).json()["data"]}
        info = admin.get("/api/info").json()
    for d in good:
        row = listed[d.device_id]
        assert (row["version"], row["secure_version"], row["manifest_version"]) == (d.version, 1, 2**62), row
    assert listed["hostile"]["version"] is None and listed["hostile"]["channel"] is None  # nothing of it stored
    assert info["checkins_dropped"] == 0  # refused at the edge, not dropped at the flush
    assert all(s < 500 for s in statuses + hostile_statuses)


@pytest.fixture
def engine(tmp_path, database_url):
    settings = Settings(admin_token="x" * 32, data_dir=tmp_path / "db", database_url=database_url)
    engine = make_engine(settings)
    init_db(engine, settings)
    with engine.begin() as conn:
        conn.execute(Device.__table__.insert(), [{"device_id": f"d{i}", "token_hash": "0" * 64, "bucket": 0, "tags": "[]",
                                                  "hold": False, "created_at": datetime.now(UTC)} for i in range(6)])
    yield engine
    engine.dispose()


def checkin(device_id: str, **kw) -> Checkin:
    fields = {"last_seen": datetime.now(UTC), "channel": "stable", "version": "1.2", "partition": "ota_0",
              "ota_state": "valid", "manifest_version": 7, "secure_version": 1, **kw}
    return Checkin(device_id=device_id, **fields)


def test_a_row_the_database_refuses_is_dropped_alone_and_counted(engine):
    buf = CheckinBuffer()
    buf.record(checkin("d0"))
    buf.record(checkin("d1", manifest_version=2**70))  # no database stores this (SQLite nor int8)
    buf.record(checkin("d2"))
    if engine.dialect.name == "postgresql":  # what only PostgreSQL refuses: NUL, a 40-character channel, > int32
        buf.record(checkin("d3", channel="a\x00b"))
        buf.record(checkin("d4", channel="c" * 40))
        buf.record(checkin("d5", ml_latency_us=2**31))
    written = buf.flush(engine)  # the shutdown flush is this same call: it completes
    bad = 4 if engine.dialect.name == "postgresql" else 1
    assert (written, buf.dropped, buf.pending()) == (2, bad, 0)
    with engine.connect() as conn:
        rows = dict(conn.execute(Device.__table__.select().with_only_columns(Device.device_id, Device.version)).all())
    assert rows["d0"] == rows["d2"] == "1.2" and rows["d1"] is None
    # The next batch is not affected by the one before.
    buf.record(checkin("d1", version="1.3"))
    assert buf.flush(engine) == 1 and buf.dropped == bad


def test_an_event_names_the_channel_of_the_newest_checkin_even_while_it_is_being_written(engine):
    """A device posts its events right after the poll that offered the update. Its check-in may be in a
    flush that had not committed when the event's transaction read the device row (stored channel:
    none yet): the channel is still the check-in's."""
    buf = CheckinBuffer()
    buf.record(checkin("d0", channel="beta"))
    assert buf.channel_of("d0", None) == "beta"  # pending
    assert buf.flush(engine) == 1
    assert buf.channel_of("d0", None) == "beta"  # written, though the row the event read was older
    assert buf.channel_of("d1", "stable") == "stable"  # no check-in here: the stored row says
