"""The real TensorFlow Lite Micro interpreter (the `tflite-micro` wheel: TFLM built for the host).

Also the simulator's inference backend: ``python -m otaml.ml.tflm`` speaks a small binary protocol
on stdin/stdout (firmware/port/posix/ml_worker.c), so otaml-sim runs its model through the real TFLM
kernels instead of a re-implementation.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys

import numpy as np


def _interpreter(model: bytes, arena_bytes: int):
    from tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)


def invoke(model: bytes, arena_bytes: int, q_input: np.ndarray) -> np.ndarray:
    it = _interpreter(model, arena_bytes)
    it.set_input(np.asarray(q_input, dtype=np.int8).reshape(1, -1), 0)
    it.invoke()
    return np.asarray(it.get_output(0)).reshape(-1).astype(np.int8)


def invoke_many(model: bytes, arena_bytes: int, q_inputs: np.ndarray) -> np.ndarray:
    it = _interpreter(model, arena_bytes)
    out = []
    for row in np.asarray(q_inputs, dtype=np.int8):
        it.set_input(row.reshape(1, -1), 0)
        it.invoke()
        out.append(np.asarray(it.get_output(0)).reshape(-1))
    return np.asarray(out, dtype=np.int8)


def io_details(model: bytes, arena_bytes: int) -> dict[str, dict]:
    it = _interpreter(model, arena_bytes)
    out = {}
    for name, d in (("input", it.get_input_details(0)), ("output", it.get_output_details(0))):
        qp = d["quantization_parameters"]
        out[name] = {
            "shape": [int(s) for s in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "scale": float(qp["scales"][0]),
            "zero_point": int(qp["zero_points"][0]),
        }
    return out


def required_arena(model: bytes, n_in: int, upper: int = 64 * 1024) -> int:
    """Smallest arena (16-byte steps) in which the host TFLM allocates and invokes the model."""

    def fits(size: int) -> bool:
        try:
            with _quiet():
                invoke(model, size, np.zeros(n_in, dtype=np.int8))
            return True
        except Exception:  # TFLM reports allocation failure as a RuntimeError (or worse) here
            return False

    lo, hi = 16, upper
    if not fits(hi):
        raise ValueError(f"the model does not fit a {upper}-byte arena")
    while hi - lo > 16:
        mid = (lo + hi) // 32 * 16
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def model_ops(model: bytes) -> list[str]:
    """Builtin op names the model uses (read with LiteRT's flatbuffer reader)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    return sorted({op["op_name"] for op in it._get_ops_details()})


@contextlib.contextmanager
def _quiet():
    """TFLM prints allocation failures on the C++ side: keep them off the console during the search."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _serve() -> int:
    """Worker protocol, all little-endian: the simulator sends
         b"L" u32 arena u32 len <model bytes>   -> b"O" u32 n_in u32 n_out   | b"E" u32 len <message>
         b"I" <n_in int8>                       -> b"O" <n_out int8>          | b"E" u32 len <message>
    and closes stdin to stop the worker."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    it = None
    n_in = n_out = 0

    def error(msg: str) -> None:
        data = msg.encode()[:200]
        out.write(b"E" + struct.pack("<I", len(data)) + data)
        out.flush()

    while True:
        cmd = inp.read(1)
        if not cmd:
            return 0
        if cmd == b"L":
            arena, length = struct.unpack("<II", inp.read(8))
            model = inp.read(length)
            try:
                with _quiet():
                    it = _interpreter(model, arena)
                    n_in = int(np.prod(it.get_input_details(0)["shape"]))
                    n_out = int(np.prod(it.get_output_details(0)["shape"]))
                out.write(b"O" + struct.pack("<II", n_in, n_out))
                out.flush()
            except Exception as e:  # a corrupted model: the device's health check must see it fail
                it = None
                error(f"model does not load: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        elif cmd == b"I":
            data = inp.read(n_in)
            if it is None:
                error("no model loaded")
                continue
            try:
                it.set_input(np.frombuffer(data, dtype=np.int8).reshape(1, -1), 0)
                it.invoke()
                out.write(b"O" + np.asarray(it.get_output(0), dtype=np.int8).tobytes())
                out.flush()
            except Exception as e:
                error(f"invoke failed: {e}")
        else:
            error(f"unknown command {cmd!r}")
            return 2


if __name__ == "__main__":
    sys.exit(_serve())
