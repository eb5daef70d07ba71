"""A reader for the .tflite flatbuffer the model card pins, enough for the int8 graphs the firmware
runs: FULLY_CONNECTED (per-channel or per-tensor int8 weights, int32 bias) and SOFTMAX. Scales are
kept as their float32 bit patterns, so every quantization parameter is derived with exact integer
arithmetic (otaml.int8), never with the platform's float (32-bit on an ESP32).

Hostile bytes end in ModelError, never in an IndexError deep inside.
"""

import struct

FULLY_CONNECTED = 9
SOFTMAX = 25
INT8 = 9
INT32 = 2
ACT_NONE = 0
ACT_RELU = 1


class ModelError(ValueError):
    pass


class _Table:
    def __init__(self, buf, pos):
        self.buf = buf
        self.pos = pos
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt = vt
        self.vt_len = struct.unpack_from("<H", buf, vt)[0]

    def _field(self, i):
        o = 4 + 2 * i
        if o + 2 > self.vt_len:
            return 0
        return struct.unpack_from("<H", self.buf, self.vt + o)[0]

    def scalar(self, i, fmt, default=0):
        off = self._field(i)
        return struct.unpack_from(fmt, self.buf, self.pos + off)[0] if off else default

    def _ref(self, i):
        off = self._field(i)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, i):
        at = self._ref(i)
        return None if at is None else _Table(self.buf, at)

    def vector(self, i, fmt=None):
        """A vector of scalars (fmt like "<i") or of tables (fmt None), or [] when absent."""
        at = self._ref(i)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        at += 4
        if fmt is None:
            return [_Table(self.buf, at + 4 * k + struct.unpack_from("<I", self.buf, at + 4 * k)[0]) for k in range(n)]
        size = struct.calcsize(fmt)
        if at + n * size > len(self.buf):
            raise ModelError("a vector runs past the end of the model")
        return [struct.unpack_from(fmt, self.buf, at + size * k)[0] for k in range(n)]

    def bytes_(self, i):
        at = self._ref(i)
        if at is None:
            return b""
        n = struct.unpack_from("<I", self.buf, at)[0]
        if at + 4 + n > len(self.buf):
            raise ModelError("a buffer runs past the end of the model")
        return self.buf[at + 4:at + 4 + n]


class Tensor:
    def __init__(self, t, buffers):
        self.shape = t.vector(0, "<i")
        self.type = t.scalar(1, "<b")
        self.buffer = t.scalar(2, "<I")
        q = t.table(4)
        self.scale_bits = q.vector(2, "<I") if q else []  # float32 bit patterns
        self.zero_points = q.vector(3, "<q") if q else []
        self.data = buffers[self.buffer] if 0 < self.buffer < len(buffers) else b""

    @property
    def zero_point(self):
        return self.zero_points[0] if self.zero_points else 0


class Op:
    def __init__(self, code, inputs, outputs, activation=ACT_NONE, beta_bits=0x3F800000):
        self.code = code
        self.inputs = inputs
        self.outputs = outputs
        self.activation = activation
        self.beta_bits = beta_bits


class Graph:
    def __init__(self, tensors, ops, inputs, outputs):
        self.tensors: "list[Tensor]" = tensors
        self.ops: "list[Op]" = ops
        self.inputs: "list[int]" = inputs
        self.outputs: "list[int]" = outputs


def parse(model):
    """The first subgraph of a TFLite model: its tensors, operators, inputs and outputs."""
    try:
        if len(model) < 8 or model[4:8] != b"TFL3":
            raise ModelError("not a TFLite flatbuffer (no TFL3 identifier)")
        root = _Table(model, struct.unpack_from("<I", model, 0)[0])
        codes = []
        for oc in root.vector(1):
            codes.append(max(oc.scalar(0, "<b"), oc.scalar(3, "<i")))
        buffers = [b.bytes_(0) for b in root.vector(4)]
        subgraphs = root.vector(2)
        if not subgraphs:
            raise ModelError("the model has no subgraph")
        sg = subgraphs[0]
        tensors = [Tensor(t, buffers) for t in sg.vector(0)]
        ops = []
        for o in sg.vector(3):
            idx = o.scalar(0, "<I")
            if idx >= len(codes):
                raise ModelError("an operator names an unknown opcode")
            code = codes[idx]
            options = o.table(4)
            act, beta = ACT_NONE, 0x3F800000
            if options is not None and code == FULLY_CONNECTED:
                act = options.scalar(0, "<b")
            elif options is not None and code == SOFTMAX:
                beta = options.scalar(0, "<I", 0x3F800000)
            ops.append(Op(code, o.vector(1, "<i"), o.vector(2, "<i"), act, beta))
        return Graph(tensors, ops, sg.vector(1, "<i"), sg.vector(2, "<i"))
    except (ValueError, IndexError, TypeError) as e:
        if isinstance(e, ModelError):
            raise
        raise ModelError("malformed flatbuffer: %s" % e)
