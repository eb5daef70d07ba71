"""The ring bucket formula, pinned: README.md documents it, the server stores it per device, and
tests/utils/devices.py computes it for ring assertions. The table was computed outside Python
(coreutils sha256sum and bc: `echo "ibase=16; <first 16 hex digits, upper case> % 2710" | bc`), and the
last column is what the whole-hash reading would give, so a change of formula on either side fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils.devices import ring_bucket

ROOT = Path(__file__).resolve().parents[2]

# device id: (bucket by the first 8 bytes, bucket by the whole 32-byte hash)
PINNED = {
    "dev-0000": (8687, 6811),
    "dev-0001": (7590, 290),
    "dev-0042": (5211, 6663),
    "small-00": (7932, 6744),
    "first-one": (5153, 1503),
    "otaml-a4cf12345678": (3701, 9686),
    "x": (9876, 5265),
}


def test_the_readme_states_the_formula_the_table_was_computed_with():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "bucket = the first 8 bytes of sha256(device id) as a big-endian integer, mod 10000" in readme


@pytest.mark.parametrize("device_id", PINNED)
def test_the_test_helper_agrees_with_the_pinned_table(device_id):
    assert ring_bucket(device_id) == PINNED[device_id][0]


@pytest.mark.e2e
def test_the_server_stores_the_pinned_bucket_for_each_device(server):
    with server.admin() as admin:
        for device_id, (bucket, whole_hash) in PINNED.items():
            r = admin.post("/api/devices", json={"device_id": device_id})
            assert r.status_code == 201, r.text
            assert r.json()["bucket"] == bucket != whole_hash
