"""The poll path's precomputation (releases/polling.py, api/poll_asgi.py), property-based, no server:
whatever the memo and the header reader save, a poll must record and answer exactly what the plain
validation would (end-to-end polls are in test_polls_and_checkins.py and the firmware tests)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaml.api.poll_asgi import poll_headers
from otaml.releases.polling import BadCheckinError, ResponseHeads, ValidatedCheckins, checkin_from_headers
from otaml.releases.serving import ServedManifest

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Valid and invalid values for every header a check-in reads: a sequence of polls mixes them, repeats
# them (memo hits) and changes one at a time (misses).
VALUES = {
    "x-otaml-version": ["1.2", "1.3", "1.2\n", "x" * 33],
    "x-otaml-partition": ["ota_0", "ota_1", ""],
    "x-otaml-ota-state": ["valid", "pending_verify", "bogus"],
    "x-otaml-manifest-version": ["1", "2", "٣", "9" * 40],
    "x-otaml-secure-version": ["0", "4294967296"],
    "x-otaml-model": ["amp_health/1", "\x00"],
    "x-otaml-ml-counters": ["healthy=1,unstable=2", "healthy=2,unstable=2", "healthy"],
    "x-otaml-ml-latency-us": ["900", "-1"],
    "x-otaml-config-revision": ["0", "3"],
    "x-otaml-config-applied": ["alert_threshold=80", "nope=1"],
    "x-otaml-rssi": ["-60", "-61", "-129"],
    "x-otaml-free-heap": ["150000", "1e5"],
    "x-otaml-min-free-heap": ["90000"],
    "x-otaml-uptime-s": ["60", "61"],
    "x-otaml-reset-reason": ["poweron", "meteor"],
}
HEADERS = st.dictionaries(st.sampled_from(sorted(VALUES)), st.just(None)).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.sampled_from(VALUES[k]) for k in keys}))
POLLS = st.lists(st.tuples(st.sampled_from(["dev-1", "dev-2"]), st.sampled_from(["stable", "beta"]), HEADERS),
                 min_size=1, max_size=25)


def _plain(h, device, channel):  # type: ignore[no-untyped-def]
    try:
        return checkin_from_headers(h, device, channel)
    except BadCheckinError as e:
        return e


@FAST
@given(POLLS)
def test_the_checkin_memo_records_what_validation_would(polls):
    memo = ValidatedCheckins()
    for device, channel, h in polls:
        before = datetime.now(UTC)
        expected = _plain(h, device, channel)
        try:
            got = memo.checkin(h, device, channel)
        except BadCheckinError as e:
            assert isinstance(expected, BadCheckinError) and str(e) == str(expected)
            continue
        assert not isinstance(expected, BadCheckinError), f"the memo let {expected} through"
        assert dataclasses.replace(got, last_seen=expected.last_seen) == expected
        assert got.last_seen >= before  # a memo hit is stamped with this poll's time, not the first one's


@FAST
@given(POLLS)
def test_the_memo_key_from_the_fast_path_is_the_same_as_from_the_headers(polls):
    """The fast path hands the memo the raw X-Otaml-* pairs it collected; a check-in must not depend on
    which of the two keys was used."""
    by_raw, by_dict = ValidatedCheckins(), ValidatedCheckins()
    for device, channel, h in polls:
        raw = [(b"host", b"x"), (b"x-otaml-device-id", device.encode()), *((k.encode(), v.encode()) for k, v in h.items())]
        decoded, key = poll_headers(raw)
        a = _plain_memo(by_raw, decoded, device, channel, key)
        b = _plain_memo(by_dict, decoded, device, channel, None)
        assert type(a) is type(b)
        if not isinstance(a, BadCheckinError):
            assert dataclasses.replace(a, last_seen=b.last_seen) == b


def _plain_memo(memo, h, device, channel, key):  # type: ignore[no-untyped-def]
    try:
        return memo.checkin(h, device, channel, key)
    except BadCheckinError as e:
        return e


@FAST
@given(st.lists(st.tuples(st.sampled_from([b"x-otaml-version", b"authorization", b"if-none-match", b"cookie", b"x-other"]),
                          st.binary(max_size=20)), max_size=12))
def test_poll_headers_decodes_what_a_poll_reads_and_the_last_repeat_wins(raw):
    h, key = poll_headers(raw)
    wanted = {b"x-otaml-version", b"authorization", b"if-none-match"}
    expected = {k.decode(): v.decode("latin-1") for k, v in raw if k in wanted}  # later pairs overwrite earlier ones
    assert h == expected
    assert key == tuple((k, v) for k, v in raw if k.startswith(b"x-otaml-"))


def test_response_headers_are_encoded_once_per_manifest_and_follow_a_new_one():
    heads = ResponseHeads(poll_interval=60, limit=2)
    a = ServedManifest(b'{"a": 1}', "sig-a", "kid", '"etag-a"', 1)
    b = ServedManifest(b'{"b": 22}', "sig-b", "kid", '"etag-b"', 2)
    full_a, not_modified_a = heads.of(a)
    assert heads.of(a)[0] is full_a  # the same list: nothing formatted again
    assert dict(full_a) == {b"X-Otaml-Poll-Interval": b"60", b"etag": b'"etag-a"', b"cache-control": b"no-cache",
                            b"X-Otaml-Signature": b"sig-a", b"X-Otaml-Key-Id": b"kid",
                            b"content-type": b"application/json", b"content-length": b"8"}
    assert b"content-length" not in dict(not_modified_a) and dict(not_modified_a)[b"etag"] == b'"etag-a"'
    assert dict(heads.of(b)[0])[b"X-Otaml-Signature"] == b"sig-b"
    c = ServedManifest(b"{}", "sig-c", "kid", '"etag-c"', 3)  # past the limit: cleared, still right
    assert dict(heads.of(c)[0])[b"etag"] == b'"etag-c"' and dict(heads.of(a)[0])[b"etag"] == b'"etag-a"'
