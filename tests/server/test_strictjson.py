"""The strict reader of signed documents (otaml.manifest.strictjson): within the rules it reads what
json.loads reads; outside them it refuses with StrictJSONError (never RecursionError, never anything else).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaml.core.errors import ManifestError
from otaml.manifest import signing, strictjson
from otaml.manifest.format import parse_manifest, read_manifest
from tests.utils.processes import ROOT

KEY = signing.load_private_key(ROOT / "manifests" / "keys" / "test-release.pem")
GOOD = (ROOT / "manifests" / "vectors" / "valid_update.json").read_bytes()

# Text json.dumps writes within the rules: no NUL (J3), no lone surrogates (J3).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
SAFE_INT = st.integers(-strictjson.MAX_SAFE_INTEGER, strictjson.MAX_SAFE_INTEGER)
PLAIN_FLOAT = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: "e" not in repr(f) and repr(f) != "-0.0" and len(repr(f)) <= strictjson.MAX_NUMBER_CHARS)
SCALARS = st.none() | st.booleans() | SAFE_INT | PLAIN_FLOAT | TEXT
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                      max_leaves=40)


def _depth_and_count(value: object, depth: int = 1) -> tuple[int, int]:
    if isinstance(value, dict):
        inner = [_depth_and_count(v, depth + 1) for v in value.values()]
        return max([depth] + [d for d, _ in inner]), 1 + len(value) + sum(n for _, n in inner)
    if isinstance(value, list):
        inner = [_depth_and_count(v, depth + 1) for v in value]
        return max([depth] + [d for d, _ in inner]), 1 + sum(n for _, n in inner)
    return depth, 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(TEXT, VALUES, max_size=6), st.sampled_from([None, 2]), st.booleans())
def test_within_the_rules_it_reads_what_json_loads_reads(obj, indent, ascii_only):
    raw = json.dumps(obj, indent=indent, ensure_ascii=ascii_only).encode()
    depth, count = _depth_and_count(obj)
    if depth > strictjson.MAX_DEPTH or count > strictjson.MAX_TOKENS:
        with pytest.raises(strictjson.StrictJSONError, match="rule J6"):
            strictjson.loads(raw)
    else:
        assert strictjson.loads(raw) == json.loads(raw, parse_float=Decimal)


# Fragments that are legal and illegal JSON in equal measure, so random texts sit near the rules' edges.
FRAGMENTS = ['{', '}', '[', ']', ',', ':', '"a"', '"\\u0061"', '"a\\u0000"', '"\\ud800"', '"\\ud800\\udc00"',
             '"\\udc00"', '"\\/"', '"\\x"', '"é"', '0', '-0', '01', '1.5', '1.', '1e3', '9007199254740991',
             '9007199254740992', '-9007199254740991', '1.50', 'true', 'fals', 'null', ' ', '\n', '\x0c', '\ufeff',
             '\x00', 'NaN', '"' + "1" * 40 + '"', "1" * 33]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30))
def test_what_it_accepts_json_loads_reads_the_same_and_without_duplicates(fragments):
    raw = "".join(fragments).encode("utf-8", "surrogatepass")
    try:
        got = strictjson.loads(raw)
    except strictjson.StrictJSONError:
        return

    def no_duplicates(pairs):
        names = [k for k, _ in pairs]
        assert len(names) == len(set(names)), names
        return dict(pairs)

    expected = json.loads(raw, parse_float=Decimal, object_pairs_hook=no_duplicates)
    assert got == expected and isinstance(got, dict)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda cut, junk: GOOD[:cut] + junk + GOOD[cut:],
                                           st.integers(0, len(GOOD)), st.binary(max_size=8)))
def test_arbitrary_bytes_raise_only_manifest_error(raw):
    try:
        parse_manifest(raw)
    except ManifestError:
        pass


@pytest.mark.parametrize("depth", [9, 1_500, 200_000])
def test_deep_nesting_is_refused_by_rule_not_by_recursion(depth):
    with pytest.raises(strictjson.StrictJSONError, match="rule J6: nesting deeper than 8"):
        strictjson.loads(b'{"a":' + b"[" * depth + b"]" * depth + b"}")


def test_a_validly_signed_deep_manifest_is_a_manifest_error_not_a_recursion_error():
    body = GOOD[:-3] + b',\n  "x": ' + b"[" * 1500 + b"]" * 1500 + b"\n}\n"
    assert len(body) <= 4096
    with pytest.raises(ManifestError, match="rule J6"):
        read_manifest(body, KEY.sign(body), KEY.public_key)


@pytest.mark.parametrize(("raw", "rule"), [
    (b'{"a":1,"a":1}', "J4"), (b'{"a":1,"\\u0061":1}', "J4"), (b'{"x":{"a":1,"a":2}}', "J4"),
    (b'{"a":"x\\u0000"}', "J3"), (b'{"a\\u0000":1}', "J3"), (b'{"a":"\\udc00"}', "J3"), (b'{"a":"\\ud800\\u0041"}', "J3"),
    (b'{"a":"\x1f"}', "J3"), (b'{"a":"\\a"}', "J3"),
    (b'{}{}', "J2"), (b'{} x', "J2"), (b'[]', "J2"), (b'\x0c{}', "J2"), (b'{"a":1,}', "J2"), (b"{'a':1}", "J2"),
    (b'\xef\xbb\xbf{}', "J1"), (b'{"a":"\xed\xa0\x80"}', "J1"), (b'{"a":"\xf4\x90\x80\x80"}', "J1"), (b'{"a":"\xe0\x80\xaf"}', "J1"),
    (b'{"a":01}', "J5"), (b'{"a":1e2}', "J5"), (b'{"a":-0}', "J5"), (b'{"a":-0.0}', "J5"), (b'{"a":1.}', "J5"),
    (b'{"a":9007199254740992}', "J5"), (b'{"a":-9007199254740992}', "J5"), (b'{"a":' + b"1" * 33 + b"}", "J5"),
    (b'{"a":0.' + b"0" * 31 + b"}", "J5"), (b'{"a":NaN}', "J2"), (b'{"a":+1}', "J2"),
])
def test_each_rule_names_itself(raw, rule):
    with pytest.raises(strictjson.StrictJSONError, match=f"rule {rule}"):
        strictjson.loads(raw)


def test_the_limits_themselves_are_allowed():
    assert strictjson.loads(b'{"a":' + b"[" * 7 + b"]" * 7 + b"}")["a"] == [[[[[[[]]]]]]]
    many = strictjson.loads(b'{"a":[' + b",".join([b"0"] * 253) + b"]}")  # 1 + 1 + 1 + 253 = 256
    assert len(many["a"]) == 253
    assert strictjson.loads(b'{"a":9007199254740991,"b":-9007199254740991,"c":0.' + b"0" * 29 + b"1}")["a"] == 2**53 - 1
    assert strictjson.loads(b'{"a":"\\ud83d\\ude00\\/"}')["a"] == "\U0001f600/"
    assert math.isclose(float(strictjson.loads(b' \t\r\n{"v":1.20}\n ')["v"]), 1.2)


@pytest.mark.parametrize("text", ["stable\n", "stable\r\n", "Stable", "-stable", "s" * 33, "stable\x00"])
def test_channel_names_match_whole_with_no_trailing_newline(text):
    from otaml.manifest.format import is_valid_channel

    assert not is_valid_channel(text)
    assert is_valid_channel("stable") and is_valid_channel("s" * 32)


@pytest.mark.parametrize("text", ["1.2\n", "1.2 ", "\u0661.2", "1.2.3.4", "01.2"])
def test_versions_match_whole(text):
    from otaml.core.errors import VersionError
    from otaml.manifest.versions import Version

    with pytest.raises(VersionError):
        Version.parse(text)


def test_config_documents_the_server_signs_pass_the_device_rules():
    from otaml.fleet.config import ConfigValueError, document

    assert strictjson.loads(document("dev-1", 2**53 - 1, {"alert_threshold": 0}))["revision"] == 2**53 - 1
    with pytest.raises(ConfigValueError, match="rule J5"):  # a revision no device could read exactly
        document("dev-1", 2**53, {})
