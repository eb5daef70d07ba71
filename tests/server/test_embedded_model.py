"""`release publish` finds the model and card an image embeds (as ESP-IDF's EMBED_FILES/EMBED_TXTFILES
lay them out) and refuses an image whose model is not its card's; the server checks again."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaml.cli.client import ReleaseClient
from otaml.core.errors import ImageError
from otaml.image.app_image import load_app_image
from otaml.image.embedded_model import check_embedded_models
from otaml.image.synthetic import build_app_image, embedded_file, model_payload
from otaml.manifest import signing
from otaml.manifest.format import build_manifest_bytes
from otaml.releases.urls import binary_url
from tests.server.test_publish import data_state, refused

ROOT = Path(__file__).resolve().parents[2]
MODEL = (ROOT / "firmware" / "model" / "amp_health.tflite").read_bytes()
CARD_TEXT = (ROOT / "firmware" / "model" / "amp_health.card.json").read_bytes()
CARD = json.loads(CARD_TEXT)


def image_with(payload: bytes, version: str = "1.2", **kw) -> bytes:
    return build_app_image(version, payload=payload, **kw)


def check(image: bytes):  # type: ignore[no-untyped-def]
    return check_embedded_models(load_app_image(image, "esp32"))


def test_the_committed_model_is_found_and_matches_its_card():
    image = image_with(model_payload(MODEL, CARD_TEXT), code_size=1_500_000)
    [found] = check(image)
    assert (found.card.model_id, found.size, found.sha256) == ("amp_health/1", len(MODEL), CARD["sha256"])
    segment = load_app_image(image, "esp32").segments[0]
    assert segment.data[found.address - segment.address:][: len(MODEL)] == MODEL  # where it really is


def test_firmware_without_a_model_passes_with_nothing_found():
    assert check(build_app_image("1.2")) == []


def test_the_length_word_may_be_padded_to_a_word_boundary():
    """A real link may align `.long` after the bytes; the card is found from its NUL either way."""
    model = MODEL + b"\x01"  # 9209 bytes: its length word needs 3 bytes of padding to be aligned
    card = json.dumps({**CARD, "tflite_bytes": len(model), "sha256": hashlib.sha256(model).hexdigest()}).encode()
    pad = (-(0x3F400020 + 256 + len(model))) % 4
    payload = model + b"\0" * pad + struct.pack("<I", len(model)) + embedded_file(card, text=True)
    [found] = check(image_with(payload))
    assert found.size == len(model)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.integers(0, len(MODEL) - 1), bit=st.integers(0, 7))
def test_any_flipped_bit_of_the_model_is_refused(at, bit):
    model = bytearray(MODEL)
    model[at] ^= 1 << bit
    with pytest.raises(ImageError, match="^the image's model amp_health/1") as e:
        check(image_with(model_payload(bytes(model), CARD_TEXT)))
    if not 4 <= at < 8:  # the flatbuffer's identifier itself: no model is found at all
        assert f"the card says {CARD['sha256'][:16]}…" in str(e.value)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delta=st.integers(-len(MODEL) + 16, 4096).filter(lambda d: d != 0))
def test_a_model_of_another_length_is_refused_naming_both_lengths(delta):
    model = MODEL[:delta] if delta < 0 else MODEL + bytes(range(256)) * (delta // 256) + bytes(delta % 256)
    with pytest.raises(ImageError, match=rf"is {len(model)} bytes, the card says {len(MODEL)}$"):
        check(image_with(model_payload(model, CARD_TEXT)))


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.replace(b'"sha256"', b'"sha257"'), "field `sha256`: Field required"),
    (lambda c: c.replace(b'"tflite_bytes": 9208', b'"tflite_bytes": "9208"'), "field `tflite_bytes`"),
    (lambda c: c.replace(b'"arena_bytes": 4608', b'"arena_bytes": 65536'), "the firmware reserves 8192"),
    (lambda c: c.replace(b'"FULLY_CONNECTED"', b'"CONV_2D"'), "CONV_2D, which the firmware's op resolver"),
    (lambda c: c[: c.index(b'"labels"')] + c[c.index(b'"labels"') + 1:], "does not validate"),
])
def test_a_card_the_firmware_cannot_use_is_refused(edit, message):
    with pytest.raises(ImageError, match=message):
        check(image_with(model_payload(MODEL, edit(CARD_TEXT))))


def test_a_card_whose_model_is_missing_is_refused():
    with pytest.raises(ImageError, match="its card is embedded but no .tflite flatbuffer"):
        check(image_with(embedded_file(CARD_TEXT, text=True)))


@pytest.mark.e2e
def test_publish_refuses_the_corrupted_model_and_stores_nothing(cli, server, make_image):
    healthy = make_image("1.1", payload=model_payload(MODEL, CARD_TEXT))
    result = cli("publish", "1.1", str(healthy))
    assert result.returncode == 0, result.stderr
    assert f"model amp_health/1 ({len(MODEL):,} bytes, sha256 {CARD['sha256'][:16]}…) matches its card" in result.stdout
    before = data_state(server)

    model = bytearray(MODEL)
    model[len(MODEL) // 2] ^= 0x01
    refused(cli("publish", "1.2", str(make_image("1.2", payload=model_payload(bytes(model), CARD_TEXT)))),
            "the image's model amp_health/1 at 0x", f"the card says {CARD['sha256'][:16]}…")
    refused(cli("publish", "1.2", str(make_image("1.2", payload=model_payload(MODEL[:-1], CARD_TEXT)))),
            f"is {len(MODEL) - 1} bytes, the card says {len(MODEL)}")
    assert data_state(server) == before

    plain = cli("publish", "1.2", str(make_image("1.2")))
    assert plain.returncode == 0 and "no model card in the image: no model to check" in plain.stdout


@pytest.mark.e2e
def test_the_server_refuses_it_too(server, make_image, signing_key):
    """A client that skips the CLI's check (an older CLI, a script) is refused by the server."""
    model = bytearray(MODEL)
    model[100] ^= 0x80
    path = make_image("1.2", payload=model_payload(bytes(model), CARD_TEXT))
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    before = data_state(server)
    with ReleaseClient(server.url, server.admin_token) as client:
        info = client.info()
        manifest = build_manifest_bytes(
            semver="1.2", file_url=binary_url(info["base_url"], sha, path.name), sha256=sha, size=len(data),
            project="otaml", chip="esp32", secure_version=0, channel="stable",
            manifest_version=info["next_manifest_version"], key_id=signing_key.key_id, expires_in=3600)
        with pytest.raises(ImageError, match="the image's model amp_health/1 at 0x[0-9a-f]{8} has sha256"):
            client.publish(path=path, channel="stable", manifest=manifest, signature=signing_key.sign(manifest),
                           public_pem=signing.public_pem(signing_key.public_key), legacy_clients=True)
    assert data_state(server) == before and before[1:] == (0, 0)
