"""The adversarial corpus (manifests/vectors/adversarial.jsonl): the C core and the Python reference of the
device verdict (otaml.manifest.device) judge every entry alike, and nothing is accepted without the key.

build/host/judge_corpus runs each entry through otaml_policy_evaluate / otaml_config_verify; here the
same entries go through the Python reference, live, and the two must agree line by line.
"""

from __future__ import annotations

import base64
import collections
import functools
import json
import random
import subprocess
import sys

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from otaml.core.errors import SignatureError
from otaml.manifest import device, signing
from tests.utils.processes import ROOT
from tests.utils.sim import BUILD

CORPUS = ROOT / "manifests" / "vectors" / "adversarial.jsonl"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ACCEPTED = {"update", "no_update"}


def _load() -> tuple[dict, list[dict]]:
    lines = CORPUS.read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


HEADER, ENTRIES = _load()
RELEASE = signing.load_private_key(ROOT / "manifests" / "keys" / "test-release.pem")
CONFIG = signing.load_private_key(ROOT / "manifests" / "keys" / "test-config.pem")


@functools.cache
def c_verdicts() -> dict[str, str]:
    r = subprocess.run([str(BUILD / "judge_corpus"), str(CORPUS)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 or "differ from the corpus" in r.stderr, r.stderr[-2000:]
    assert "ERROR: " not in r.stderr, r.stderr[-4000:]  # sanitizer reports
    return dict(line[2:].split("\t", 1) for line in r.stdout.splitlines() if line.startswith("= "))


@functools.cache
def python_verdicts() -> dict[str, str]:
    return {e["id"]: python_verdict(e) for e in ENTRIES}


def python_verdict(e: dict) -> str:
    if e["kind"] == "manifest":
        decision, reason = device.judge(base64.b64decode(e["body"]), e["sig"], [RELEASE.public_key],
                                        device.DeviceContext.from_dict(HEADER["context"]))
        return decision if decision != device.REJECT else reason
    status, applied = device.judge_config(e["doc"], e["sig"], [CONFIG.public_key], HEADER["device_id"],
                                          HEADER["applied_revision"])
    return f"{status}\t{','.join(f'{k}={v}' for k, v in applied.items())}"


def made_with_key(key: signing.SigningKey, data: bytes, sig: str) -> bool:
    """Whether ``sig`` is the key's own signature over exactly ``data`` (RFC 6979 makes it reproducible),
    or that signature with s negated (ECDSA's one malleation: same key, same bytes). A header value is a
    C string to the core: it ends at the first NUL."""
    try:
        r, s = decode_dss_signature(signing.decode_signature(sig.split("\x00", 1)[0]))
    except (SignatureError, ValueError):
        return False
    r0, s0 = decode_dss_signature(base64.b64decode(key.sign(data)))
    return r == r0 and s in (s0, P256_N - s0)


def test_committed_corpus_matches_its_generator(tmp_path):
    out = tmp_path / "adversarial.jsonl"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-adversarial"), "--out", str(out)], check=True,
                   capture_output=True, timeout=300)
    assert out.read_bytes() == CORPUS.read_bytes(), "adversarial.jsonl is stale: run scripts/gen-adversarial"


def test_corpus_is_large_and_mostly_reaches_the_parsers():
    manifests = [e for e in ENTRIES if e["kind"] == "manifest"]
    assert len(manifests) >= 1000 and HEADER["manifests"] == len(manifests)
    assert len({(e["body"], e["sig"]) for e in manifests}) == len(manifests)
    resigned = [e for e in manifests if e["sig"] == RELEASE.sign(base64.b64decode(e["body"]))]
    assert len(resigned) >= 0.6 * len(manifests)  # an unsigned mutation only reaches the signature check
    verdicts = collections.Counter(e["expect"] for e in manifests)
    assert verdicts["manifest_malformed"] >= 500 and verdicts["bad_signature"] >= 100
    assert {"update", "no_update", "key_mismatch", "project_mismatch", "chip_mismatch", "channel_mismatch",
            "manifest_expired", "manifest_replayed", "version_failed_before", "secure_version_lower",
            "image_too_large", "manifest_too_large"} <= set(verdicts)
    configs = collections.Counter(e["expect"] for e in ENTRIES if e["kind"] == "config")
    assert set(configs) == {"ok", "parse", "signature", "too_large", "wrong_device", "stale"}


def test_python_reference_gives_the_committed_verdicts():
    verdicts = python_verdicts()
    differ = [e["id"] for e in ENTRIES
              if verdicts[e["id"]] != (e["expect"] if e["kind"] == "manifest" else f"{e['expect']}\t{e['applied']}")]
    assert not differ, f"{len(differ)} entries changed verdict (regenerate on purpose?): {differ[:10]}"


def test_c_core_and_python_reference_agree_on_every_entry():
    c, py = c_verdicts(), python_verdicts()
    assert len(c) == len(ENTRIES) == len(py)
    differ = [(e["id"], e["family"], c[e["id"]], py[e["id"]]) for e in ENTRIES if c[e["id"]] != py[e["id"]]]
    assert not differ, f"{len(differ)} entries judged differently (id, family, C, Python): {differ[:10]}"


@pytest.mark.parametrize("side", ["c", "python"])
def test_nothing_is_accepted_without_the_key(side):
    verdicts = c_verdicts() if side == "c" else python_verdicts()
    accepted = forged = 0
    for e in ENTRIES:
        if e["kind"] == "manifest" and verdicts[e["id"]] in ACCEPTED:
            accepted += 1
            forged += not made_with_key(RELEASE, base64.b64decode(e["body"]), e["sig"])
        elif e["kind"] == "config" and verdicts[e["id"]].startswith("ok\t"):
            accepted += 1
            forged += not made_with_key(CONFIG, signing.decode_base64_strict(e["doc"]), e["sig"])
    assert accepted >= 100  # the check below has something to check
    assert forged == 0


# ---- a live differential: fresh random documents each run, judged by both as if signed ----

_GOOD = json.loads((ROOT / "manifests" / "vectors" / "valid_update.json").read_text())
_MEMBERS = [(json.dumps(k), json.dumps(v)) for k, v in _GOOD.items()]
_RAW_VALUES = ['"1.2"', "1.2", "1.20", "1", "01", "-0", "1e3", "1.0", "9007199254740991", "9007199254740992", "4294967296",
               '"stable"', '"st\\u0061ble"', '"stable\\u0000"', '"\\ud800"', '"\\ud83d\\ude00"', '"\u00e9"', '""', "true",
               "null", "[]", "{}", '{"a":1,"a":2}', "[[[[[[[1]]]]]]]", "[[[[[[[[1]]]]]]]]", '"http://a/b"',
               '"https://[::1]:1/x%41"', '"http://a/ b"', '"' + "ab" * 32 + '"', '"esp32"', '"otaml"', '"0123456789abcdef"']
_NAMES = [n for n, _ in _MEMBERS] + ['"\\u0073emver"', '"x"', '""', '"size "']
_JUNK = [b"", b"", b"", b"", b"", b" ", b"{}", b"\x00", b"\xef\xbb\xbf", b"\xc0\xaf", b",", b"\n"]
# Valid values that move the verdict to a policy check.
_POLICY = {'"channel"': '"beta"', '"project"': '"other"', '"chip"': '"esp32c3"', '"manifest_version"': "3",
           '"key_id"': '"0123456789abcdef"', '"secure_version"': "0", '"size"': "1966081", '"expires"': "1794999999"}


def _random_document(rng: random.Random) -> bytes:
    members = list(_MEMBERS)
    for _ in range(rng.randrange(4)):
        op = rng.choice(["set", "add", "drop", "policy", "policy"])
        if op == "policy":
            name = rng.choice(list(_POLICY))
            members = [(n, _POLICY[name] if n == name else v) for n, v in members]
        elif op == "drop" and members:
            members.pop(rng.randrange(len(members)))
        elif op == "set" and members:
            i = rng.randrange(len(members))
            members[i] = (members[i][0], rng.choice(_RAW_VALUES))
        else:
            members.insert(rng.randrange(len(members) + 1), (rng.choice(_NAMES), rng.choice(_RAW_VALUES)))
    sep = rng.choice([",", ", ", ",\n  "])
    body = ("{" + sep.join(f"{n}:{v}" for n, v in members) + "}").encode("utf-8", "surrogatepass")
    return rng.choice(_JUNK) + body + rng.choice(_JUNK)


# Hypothesis draws the seed (and reports it on failure); 1,000 documents per seed come from it cheaply.
@settings(max_examples=4, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.integers(0, 2**32 - 1))
def test_c_and_python_agree_on_fresh_random_documents(tmp_path_factory, seed):
    rng = random.Random(seed)
    documents = [_random_document(rng) for _ in range(1000)]
    path = tmp_path_factory.mktemp("differential") / "corpus.jsonl"
    lines = [json.dumps(HEADER)] + [json.dumps({"id": f"d{i}", "kind": "manifest", "family": "differential", "sig": "",
                                                "expect": "", "body": base64.b64encode(d).decode()})
                                    for i, d in enumerate(documents)]
    path.write_text("\n".join(lines) + "\n")
    r = subprocess.run([str(BUILD / "judge_corpus"), "--verified", str(path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ERROR: " not in r.stderr, r.stderr[-3000:]
    c = dict(line[2:].split("\t", 1) for line in r.stdout.splitlines() if line.startswith("= "))
    ctx = device.DeviceContext.from_dict(HEADER["context"])
    py = {}
    for i, d in enumerate(documents):
        decision, reason = device.judge_verified(d, RELEASE.key_id, ctx)
        py[f"d{i}"] = decision if decision != device.REJECT else reason
    differ = [documents[int(k[1:])] for k in py if c[k] != py[k]]
    assert not differ, f"{len(differ)} documents judged differently, e.g. {differ[:3]}"
    assert len(set(py.values())) >= 3  # not all refused alike: the documents reach the field rules and policy
