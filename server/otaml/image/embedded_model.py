"""The model an app image embeds, checked against its own card before the image is published.

A firmware build links the model and its card into flash-mapped rodata (firmware/main/CMakeLists.txt:
EMBED_FILES ``amp_health.tflite``, EMBED_TXTFILES ``amp_health.card.json``). ESP-IDF lays each file out
as its bytes, a NUL for a text file, then its length as a little-endian 32-bit word
(tools/cmake/scripts/data_file_embed_asm.cmake). No symbols survive in the .bin, so both are found by
content:

- a card: JSON text holding a card's quoted key names, ending at the NUL; it starts where the length
  word after the NUL says, or else at the outermost ``{`` from which the text parses;
- its model: a TFLite flatbuffer (file identifier ``TFL3`` at offset 4) whose first ``tflite_bytes``
  bytes hash to the card's ``sha256``.

The checks are those of `release model validate` that need no interpreter (the card's schema, the
model's size and SHA-256, shapes, arena, ops); the golden inputs run on the device, in its self-test.
An image without a card embeds no model (firmware without ML) and passes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

from otaml.core.errors import ImageError
from otaml.image.app_image import AppImage, Segment
from otaml.ml.card import ModelCard, ModelPackageError, card_problem, model_mismatch, parse_card

CARD_KEYS = (b'"tflite_bytes"', b'"model_version"', b'"golden"')  # quoted: JSON text, not C literals
MAX_CARD = 64 * 1024
TFLITE_ID = b"TFL3"


@dataclass(frozen=True)
class EmbeddedModel:
    card: ModelCard
    address: int  # load address of the .tflite in the image
    size: int
    sha256: str

    def summary(self) -> str:
        return f"model {self.card.model_id} ({self.size:,} bytes, sha256 {self.sha256[:16]}…) matches its card"


def _u32(data: bytes, at: int) -> int | None:
    return struct.unpack_from("<I", data, at)[0] if 0 <= at <= len(data) - 4 else None


def _card_start(seg: Segment, key: int, end: int) -> int:
    data = seg.data
    aligned = ((seg.address + end + 1 + 3) & ~3) - seg.address
    for word_at in (end + 1, aligned):  # `.long` right after the NUL, or padded to a word boundary
        n = _u32(data, word_at)
        if n is not None and 0 < n <= min(MAX_CARD, end) and end - n <= key and data[end - n] == ord("{"):
            return end - n
    lo = max(0, key - MAX_CARD)
    first = at = data.rfind(b"{", lo, key)
    while at >= 0:
        try:
            if isinstance(json.loads(data[at:end]), dict):
                return at
        except ValueError:
            pass
        at = data.rfind(b"{", lo, at)
    return first if first >= 0 else key  # does not parse: the schema check names why


def _cards(seg: Segment) -> list[tuple[int, int]]:
    """(start, end) of each card text in a segment."""
    spans: dict[int, int] = {}
    for name in CARD_KEYS:
        at = seg.data.find(name)
        while at >= 0:
            end = seg.data.find(b"\0", at)
            end = len(seg.data) if end < 0 else end
            spans.setdefault(end, _card_start(seg, at, end))
            at = seg.data.find(name, end)
    return sorted((start, end) for end, start in spans.items())


def _length_word(seg: Segment, start: int, size: int) -> int | None:
    """ESP-IDF's length word of a file of size bytes embedded at start: right after it, or padded to
    the next word boundary."""
    aligned = ((seg.address + start + size + 3) & ~3) - seg.address
    for at in (start + size, aligned):
        if _u32(seg.data, at) == size:
            return size
    return None


def _embedded_length(seg: Segment, start: int, at_least: int, limit: int) -> int | None:
    """The length of a file embedded at start as ESP-IDF's length word gives it: the first size from
    at_least up to limit whose length word holds it."""
    for size in range(at_least, min(len(seg.data) - start, limit)):
        word_at = start + size
        if (seg.data[word_at:word_at + 4] == struct.pack("<I", size)) or _length_word(seg, start, size):
            return size
    return None


def _scan_limit(card: ModelCard) -> int:
    return 2 * card.tflite_bytes + 64 * 1024  # bounds the error path's search on a large image


def _find_model(card: ModelCard, segments: tuple[Segment, ...]) -> EmbeddedModel:
    candidates = []
    for seg in segments:
        at = seg.data.find(TFLITE_ID, 4)
        while at >= 0:
            start = at - 4
            chunk = seg.data[start:start + card.tflite_bytes]
            digest = hashlib.sha256(chunk).hexdigest()
            if len(chunk) == card.tflite_bytes and digest == card.sha256:
                # The card's bytes, and no more of them: unless ESP-IDF's length word says so, look
                # for a longer file (a model with bytes appended). No length word at all: embedded
                # another way (a C array), whose length the hash already pins.
                if _length_word(seg, start, card.tflite_bytes) is None:
                    longer = _embedded_length(seg, start, card.tflite_bytes + 1, _scan_limit(card))
                    if longer is not None:
                        digest = hashlib.sha256(seg.data[start:start + longer]).hexdigest()
                        raise ImageError(f"the image's model {card.model_id} at 0x{seg.address + start:08x} "
                                         f"{model_mismatch(card, longer, digest)}")
                return EmbeddedModel(card, seg.address + start, len(chunk), digest)
            candidates.append((seg, start, digest))
            at = seg.data.find(TFLITE_ID, at + 1)
    name = f"the image's model {card.model_id}"
    if not candidates:
        raise ImageError(f"{name}: its card is embedded but no .tflite flatbuffer ({TFLITE_ID.decode()}) is")
    # Name what differs: the same size with other bytes, else the size ESP-IDF's length word gives.
    for seg, start, digest in candidates:
        if _length_word(seg, start, card.tflite_bytes) is not None:
            raise ImageError(f"{name} at 0x{seg.address + start:08x} {model_mismatch(card, card.tflite_bytes, digest)}")
    for seg, start, _ in candidates:
        size = _embedded_length(seg, start, 8, _scan_limit(card))
        if size is not None and size != card.tflite_bytes:
            digest = hashlib.sha256(seg.data[start:start + size]).hexdigest()
            raise ImageError(f"{name} at 0x{seg.address + start:08x} {model_mismatch(card, size, digest)}")
    seg, start, digest = candidates[0]
    raise ImageError(f"{name} at 0x{seg.address + start:08x} {model_mismatch(card, card.tflite_bytes, digest)}")


def check_embedded_models(image: AppImage) -> list[EmbeddedModel]:
    """Every model card the image embeds, each with the model it describes; [] for firmware without one.

    Raises:
        ImageError: a card that does not validate or that the firmware could not use (shapes, arena,
            ops), or no embedded .tflite with the card's size and SHA-256 (naming what differs).
    """
    found = []
    for seg in image.segments:
        for start, end in _cards(seg):
            try:
                card = parse_card(seg.data[start:end])
            except ModelPackageError as e:
                raise ImageError(f"the image embeds a model card (at 0x{seg.address + start:08x}) that does not validate: {e}") from None
            if problem := card_problem(card):
                raise ImageError(f"the image's model {card.model_id}: {problem}")
            found.append(_find_model(card, image.segments))
    return found
