"""The model card: what a model package says about its .tflite, and the checks that need no
interpreter. Imports neither numpy nor TFLM, so `release publish` applies them to the model an image
embeds (otaml.image.embedded_model) on a server or laptop without the ``ml`` extra; the interpreter's
checks are otaml.ml.package.validate."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from otaml.core.errors import OtamlError

# What the firmware provides (firmware/port/esp_idf/otaml_ml_tflm.cc registers exactly these ops; a test
# keeps the two in step) and how much arena it reserves (CONFIG_OTAML_ML_ARENA_BYTES default).
FIRMWARE_OPS = frozenset({"FULLY_CONNECTED", "SOFTMAX", "RELU", "QUANTIZE", "DEQUANTIZE", "RESHAPE"})
FIRMWARE_ARENA_BYTES = 8 * 1024
MAX_GOLDEN = 4  # OTAML_ML_MAX_GOLDEN in firmware/core/include/otaml_ml.h


class ModelPackageError(OtamlError):
    """A model package the firmware cannot run, or whose card disagrees with its model."""


class Quantization(BaseModel):
    shape: list[int]
    dtype: Literal["int8"]
    scale: float = Field(gt=0)
    zero_point: int = Field(ge=-128, le=127)


class Golden(BaseModel):
    input: list[float]  # raw sensor values (float32-exact)
    input_int8: list[int]  # after normalization and quantization: the device checks its own math
    output_int8: list[int]  # what TFLM computes for it
    label: str


class ModelCard(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9_]{1,31}$")
    model_version: str = Field(pattern=r"^[0-9][0-9.]{0,14}$")
    labels: list[str]
    features: list[str]
    normalization: dict[str, list[float]]  # mean, std per feature
    input: Quantization
    output: Quantization
    ops: list[str]
    arena_bytes: int = Field(gt=0)
    tflite_bytes: int = Field(gt=0, le=0xFFFFFFFF)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    accuracy: dict[str, float]  # float, int8 on the held-out set
    holdout_size: int
    golden: list[Golden] = Field(min_length=1, max_length=MAX_GOLDEN)
    training: dict[str, int | float | str] = {}

    @property
    def model_id(self) -> str:
        """As devices report it in X-Otaml-Model: ``name/model_version``."""
        return f"{self.name}/{self.model_version}"


def card_path(tflite: Path) -> Path:
    return tflite.with_suffix(".card.json")


def parse_card(raw: bytes | str) -> ModelCard:
    """Raises ModelPackageError naming the first field that does not validate."""
    try:
        return ModelCard.model_validate_json(raw, strict=True)  # as the device: a number is a number
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(the document)"
        raise ModelPackageError(f"model card field `{where}`: {first['msg']}") from None


def load_package(tflite: Path) -> tuple[bytes, ModelCard]:
    try:
        model = Path(tflite).read_bytes()
        card_raw = card_path(Path(tflite)).read_text()
    except OSError as e:
        raise ModelPackageError(f"cannot read model package {tflite}: {e.strerror}") from None
    return model, parse_card(card_raw)


def model_mismatch(card: ModelCard, size: int, sha256: str) -> str:
    """How a model's bytes differ from what its card says ('' when they are the card's model)."""
    if size != card.tflite_bytes:
        return f"is {size} bytes, the card says {card.tflite_bytes}"
    if sha256 != card.sha256:
        return f"has sha256 {sha256[:16]}…, the card says {card.sha256[:16]}…"
    return ""


def card_problem(card: ModelCard, *, arena_limit: int = FIRMWARE_ARENA_BYTES,
                 firmware_ops: frozenset[str] = FIRMWARE_OPS) -> str:
    """What makes a card unusable by the firmware, without running the model ('' when nothing)."""
    n_features, n_labels = len(card.features), len(card.labels)
    if card.input.shape != [1, n_features] or card.output.shape != [1, n_labels]:
        return (f"expected input shape [1, {n_features}] and output [1, {n_labels}], card says "
                f"{card.input.shape} and {card.output.shape}")
    if card.arena_bytes > arena_limit:
        return f"the model needs a {card.arena_bytes}-byte arena; the firmware reserves {arena_limit}"
    missing = sorted(set(card.ops) - firmware_ops)
    if missing:
        return (f"the card lists {', '.join(missing)}, which the firmware's op resolver does not register "
                f"(it has {', '.join(sorted(firmware_ops))})")
    return ""
