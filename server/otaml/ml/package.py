"""The model package: a .tflite and its model card, and the checks a package must pass before a
firmware build embeds it (manifests are not involved: the model ships inside the signed image)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from otaml.core.errors import OtamlError

# What the firmware provides (firmware/main/ml_tflm.cc registers exactly these ops; a test keeps the
# two in step) and how much arena it reserves (CONFIG_OTAML_ML_ARENA_BYTES default).
FIRMWARE_OPS = frozenset({"FULLY_CONNECTED", "SOFTMAX", "RELU", "QUANTIZE", "DEQUANTIZE", "RESHAPE"})
FIRMWARE_ARENA_BYTES = 8 * 1024
MAX_GOLDEN = 4


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
    tflite_bytes: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    accuracy: dict[str, float]  # float, int8 on the held-out set
    holdout_size: int
    golden: list[Golden] = Field(min_length=1, max_length=MAX_GOLDEN)
    training: dict[str, int | float | str] = {}


def card_path(tflite: Path) -> Path:
    return tflite.with_suffix(".card.json")


def load_package(tflite: Path) -> tuple[bytes, ModelCard]:
    try:
        model = Path(tflite).read_bytes()
        card_raw = card_path(Path(tflite)).read_text()
    except OSError as e:
        raise ModelPackageError(f"cannot read model package {tflite}: {e.strerror}") from None
    try:
        card = ModelCard.model_validate_json(card_raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise ModelPackageError(f"model card field `{'.'.join(map(str, first['loc']))}`: {first['msg']}") from None
    return model, card


def quantize_input(card: ModelCard, x: np.ndarray) -> np.ndarray:
    """Normalize and quantize raw sensor values exactly as the firmware does (firmware/core otaml_ml.c):
    float32 throughout, q = floor(v / scale + 0.5) + zero_point, clamped to int8."""
    x = np.asarray(x, dtype=np.float32)
    mean = np.asarray(card.normalization["mean"], dtype=np.float32)
    std = np.asarray(card.normalization["std"], dtype=np.float32)
    v = (x - mean) / std
    q = np.floor(v / np.float32(card.input.scale) + np.float32(0.5)) + card.input.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def validate(model: bytes, card: ModelCard, *, arena_limit: int = FIRMWARE_ARENA_BYTES,
             firmware_ops: frozenset[str] = FIRMWARE_OPS) -> None:
    """Refuse a package the firmware cannot run or whose card is not the truth about its model.

    Raises ModelPackageError naming the first problem: size or digest mismatch, input or output shape,
    labels or features, an op the firmware's resolver lacks, an arena above what the firmware reserves,
    a golden input whose quantization or TFLM output differs from the card.
    """
    from otaml.ml import tflm

    if len(model) != card.tflite_bytes or hashlib.sha256(model).hexdigest() != card.sha256:
        raise ModelPackageError(
            f"the .tflite is {len(model)} bytes with sha256 {hashlib.sha256(model).hexdigest()[:12]}…, "
            f"the card says {card.tflite_bytes} bytes, {card.sha256[:12]}…"
        )
    n_features, n_labels = len(card.features), len(card.labels)
    if card.input.shape != [1, n_features] or card.output.shape != [1, n_labels]:
        raise ModelPackageError(
            f"expected input shape [1, {n_features}] and output [1, {n_labels}], card says "
            f"{card.input.shape} and {card.output.shape}"
        )
    ops = tflm.model_ops(model)
    missing = sorted(set(ops) - firmware_ops)
    if missing:
        raise ModelPackageError(
            f"the model uses {', '.join(missing)}, which the firmware's op resolver does not register "
            f"(it has {', '.join(sorted(firmware_ops))})"
        )
    details = tflm.io_details(model, card.arena_bytes)
    for name, want, got in [("input", card.input, details["input"]), ("output", card.output, details["output"])]:
        if list(got["shape"]) != want.shape or got["dtype"] != "int8":
            raise ModelPackageError(f"the model's {name} is {got['dtype']} {list(got['shape'])}, the card says int8 {want.shape}")
        if not np.isclose(got["scale"], want.scale, rtol=0, atol=0) or got["zero_point"] != want.zero_point:
            raise ModelPackageError(
                f"the model's {name} quantization is scale {got['scale']}, zero point {got['zero_point']}; the card "
                f"says {want.scale}, {want.zero_point}"
            )
    if card.arena_bytes > arena_limit:
        raise ModelPackageError(f"the model needs a {card.arena_bytes}-byte arena; the firmware reserves {arena_limit}")
    for i, g in enumerate(card.golden):
        q = quantize_input(card, np.array([g.input], dtype=np.float32))[0]
        if q.tolist() != g.input_int8:
            raise ModelPackageError(f"golden input {i}: normalization gives {q.tolist()}, the card says {g.input_int8}")
        out = tflm.invoke(model, card.arena_bytes, q)
        if out.tolist() != g.output_int8:
            raise ModelPackageError(f"golden input {i}: TFLM gives {out.tolist()}, the card says {g.output_int8}")


def write_card(tflite: Path, card: ModelCard) -> None:
    card_path(tflite).write_text(json.dumps(card.model_dump(), indent=2) + "\n")
