"""Release-key rotation without reflashing (manifests/README.md, "Key rotation"): a fleet of simulated
devices moves from key A to key B through signed key sets served beside the manifest, refuses manifests
signed by A once A is gone from its set, and refuses key sets signed by an untrusted key or older than
the one it holds. The C core and the Python reference agree on every key set of the hostile corpus."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys

import pytest

from otaml.manifest import keyset, signing
from otaml.manifest.format import build_manifest_bytes
from tests.firmware.conftest import TEST_KEY
from tests.utils.processes import ROOT
from tests.utils.sim import BUILD

pytestmark = pytest.mark.e2e
CORPUS = ROOT / "manifests" / "vectors" / "keysets.jsonl"
KEYS = ROOT / "manifests" / "keys"


def test_the_corpus_is_what_the_generator_writes(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-keysets"), "--out", str(tmp_path / "k.jsonl")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "k.jsonl").read_text() == CORPUS.read_text()  # deterministic, and committed as generated


def test_c_and_python_give_every_key_set_the_same_verdict():
    lines = CORPUS.read_text().splitlines()
    header, entries = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    trusted = [signing.load_public_key((ROOT / "manifests" / header["trusted"]).read_text())]
    verdicts = {e["expect"] for e in entries}
    assert verdicts == set(keyset.VERDICTS)  # every check is reached
    for e in entries:  # the committed verdicts are the reference's, today
        assert keyset.judge(e["doc"], e["sig"], trusted, header["project"], header["current_version"]) == e["expect"], e["id"]
    r = subprocess.run([str(BUILD / "judge_keysets")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = dict(line[2:].split("\t") for line in r.stdout.splitlines() if line.startswith("= "))
    differ = [(e["id"], e["family"], e["expect"], got.get(e["id"])) for e in entries if got.get(e["id"]) != e["expect"]]
    assert not differ, differ[:10]


@pytest.fixture
def server(proxied_server):
    """Every device of this module reaches the server through the proxy."""
    return proxied_server


def applied_set(dev) -> int:
    stored = dev.info()["nvs"].get("keyset")
    return json.loads(base64.b64decode(stored))["keyset_version"] if stored else 0


def key_id(pem_path) -> str:
    return signing.key_id(signing.load_public_key(pem_path.read_text()))


def test_a_fleet_moves_from_key_a_to_key_b_without_a_reflash(server, mitm, cli, enroll, make_image, tmp_path, events):
    a_pub = KEYS / "test-release.pub.pem"  # what the simulator's image pins: key set 0
    b_priv = tmp_path / "keys" / "b.pem"
    b_pub = signing.write_keypair(signing.generate_key(), b_priv)
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    fleet = [enroll(f"dev-{i}", mitm.url) for i in range(3)]
    for dev in fleet:
        dev.flash_image(make_image("1.1"))
        dev.run(polls=1)

    # Set 1 = {A, B}, signed by A: devices trust B beside A.
    assert cli("key", "trust", str(b_pub)).returncode == 0
    r = cli("key", "publish-set", str(a_pub), str(b_pub))
    assert r.returncode == 0 and "key set 1 published" in r.stdout, r.stderr
    for dev in fleet:
        log = dev.run(polls=2)
        assert f"manifests are verified with key set 1: {key_id(a_pub)} {key_id(b_pub)}" in log, log
        assert applied_set(dev) == 1
    # Set 2 = {B}, signed by B (a key of set 1): A is gone from the devices' keys. The server refuses it
    # while the channel's manifest is signed by A (every device would refuse that manifest), until it is
    # re-signed with B.
    r = cli("key", "publish-set", str(b_pub), "--key", str(b_priv))
    assert r.returncode == 2 and "signed by " + key_id(a_pub) in r.stderr and "release refresh" in r.stderr, r.stderr
    assert cli("refresh", "--key", str(b_priv)).returncode == 0
    for dev in fleet:
        assert "update offered" not in dev.run(polls=1)  # a manifest signed by B, verified with set 1
    r = cli("key", "publish-set", str(b_pub), "--key", str(b_priv))
    assert r.returncode == 0 and "key set 2 published" in r.stdout, r.stderr
    for dev in fleet:
        assert f"manifests are verified with key set 2: {key_id(b_pub)}" in dev.run(polls=2)
        assert applied_set(dev) == 2
    # A device that was off during both rotations follows the chain one set per poll.
    late = enroll("dev-late", mitm.url)
    late.flash_image(make_image("1.1"))
    log = late.run(polls=3)
    assert "with key set 1:" in log and "with key set 2:" in log and log.index("key set 1:") < log.index("key set 2:")
    fleet.append(late)

    # The server retires A; 1.2 is signed by B and every device takes it, no reflash.
    r = cli("key", "retire", key_id(a_pub))
    assert r.returncode == 0, r.stderr
    listed = json.loads(cli("key", "list", "--json").stdout)
    assert [k["key_id"] for k in listed["keys"] if k["retired_at"]] == [key_id(a_pub)]
    assert [s["keyset_version"] for s in listed["keysets"]] == [1, 2]
    refused = cli("publish", "1.2", str(make_image("1.2")))  # signed by A
    assert refused.returncode == 2 and "retired" in refused.stderr
    assert cli("publish", "1.2", str(make_image("1.2")), OTAML_SIGNING_KEY=str(b_priv)).returncode == 0
    for dev in fleet:
        log = dev.run(polls=3)
        assert "1.2 confirmed" in log, log
        assert dev.booted_version() == "1.2" and applied_set(dev) == 2  # the key set survived the reboot

    # An attacker (or a stale publisher) holding A: a manifest signed by A is refused by every device.
    a = signing.load_private_key(TEST_KEY)
    image = make_image("1.3")
    body = build_manifest_bytes(semver="1.3", file_url=f"{mitm.url}/binaries/{'0' * 64}/x.bin",
                                sha256=hashlib.sha256(image.read_bytes()).hexdigest(), size=image.stat().st_size,
                                project="otaml", chip="esp32", secure_version=0, channel="stable",
                                manifest_version=99, key_id=a.key_id, expires_in=3600)

    def forged(path, up):
        if path.split("?")[0].endswith("/firmware.json") and up.status in (200, 304):
            return 200, {"X-Otaml-Poll-Interval": "60", "X-Otaml-Signature": a.sign(body), "ETag": '"forged"',
                         "Content-Length": str(len(body))}, iter([body])
        return None

    mitm.tamper = forged
    for dev in fleet[:2]:
        log = dev.run(polls=1)
        assert "refused manifest: bad_signature" in log and "update offered" not in log, log
        assert dev.booted_version() == "1.2"
    assert [e["reason"] for e in events("dev-0") if e["kind"] == "rejected"] == ["bad_signature"]


def test_a_device_refuses_a_key_set_signed_by_an_untrusted_key_or_older_than_its_own(server, mitm, cli, enroll,
                                                                                    make_image, tmp_path):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    a = signing.load_private_key(TEST_KEY)
    other = signing.load_private_key(KEYS / "test-other.pem")
    assert cli("key", "publish-set", str(KEYS / "test-release.pub.pem"), str(KEYS / "test-other.pub.pem")).returncode == 0
    dev = enroll("dev-k", mitm.url)
    dev.flash_image(make_image("1.1"))
    assert "with key set 1:" in dev.run(polls=2)

    def inject(doc: bytes, signer: signing.SigningKey):
        def tamper(path, up):
            if path.split("?")[0].endswith("/firmware.json"):
                headers = {k: v for k, v in up.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
                headers.update({"X-Otaml-Keyset": base64.b64encode(doc).decode(), "X-Otaml-Keyset-Signature": signer.sign(doc),
                                "Content-Length": str(len(up.body))})
                return up.status, headers, iter([up.body])
            return None
        return tamper

    config_key = signing.load_private_key(KEYS / "test-config.pem")
    cases = [
        (keyset.build(2, "otaml", [config_key.public_key]), config_key, "bad_signature"),  # not a key of set 1
        (keyset.build(1, "otaml", [config_key.public_key]), a, "keyset_replayed"),  # signed right, but not newer
        (keyset.build(2, "other", [config_key.public_key]), other, "project_mismatch"),
    ]
    for doc, signer, reason in cases:
        mitm.tamper = inject(doc, signer)
        log = dev.run(polls=1)
        assert f"key set refused: {reason} (keeping key set 1)" in log, log
        assert applied_set(dev) == 1
    mitm.tamper = lambda path, up: None
    # The server refuses them too: a set that breaks the chain never reaches a device.
    for doc, signer, status in [(keyset.build(2, "otaml", [config_key.public_key]), config_key, 422),
                                (keyset.build(1, "otaml", [config_key.public_key]), a, 409),
                                (keyset.build(3, "otaml", [config_key.public_key]), a, 409)]:
        with server.admin() as admin:
            r = admin.post("/api/keysets", json={"document": base64.b64encode(doc).decode(), "signature": signer.sign(doc)})
        assert r.status_code == status, r.text
