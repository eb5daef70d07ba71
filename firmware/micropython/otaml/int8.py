"""TFLM's int8 reference kernels in pure Python, bit for bit: FULLY_CONNECTED (per-channel and
per-tensor) and SOFTMAX with gemmlowp's fixed-point exp and reciprocal. Quantization multipliers and
shifts are integers derived from the float32 bit patterns of the scales with exact rational
arithmetic, reproducing TFLM's double computations (QuantizeMultiplier, PreprocessSoftmaxScaling)
without using the platform's float, which is 32-bit on an ESP32.
"""

from otaml import tflite

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


class KernelError(ValueError):
    pass


def _bitlen(x):
    n = 0
    while x >> (n + 16):
        n += 16
    while x >> n:
        n += 1
    return n


def f32_parts(bits):
    """(mantissa, exponent) with value = mantissa * 2**exponent for a positive normal float32."""
    exp = (bits >> 23) & 0xFF
    if bits >> 31 or exp == 0 or exp == 0xFF:
        raise KernelError("expected a positive normal float32 scale")
    return (bits & 0x7FFFFF) | 0x800000, exp - 150


def _round_bits(num, den, bits):
    """num/den (> 0) rounded to nearest-even with `bits` significant bits: (sig, k), value = sig / 2**k."""
    k = bits - (_bitlen(num) - _bitlen(den))
    while True:
        n, d = (num << k, den) if k >= 0 else (num, den << -k)
        q, r = divmod(n, d)
        if q >= 1 << bits:
            k -= 1
        elif q < 1 << (bits - 1):
            k += 1
        else:
            break
    if 2 * r > d or (2 * r == d and q & 1):
        q += 1
        if q == 1 << bits:
            q >>= 1
            k -= 1
    return q, k


def quantize_multiplier(num, den):
    """TFLM QuantizeMultiplier of the double nearest num/den: (multiplier, shift)."""
    if num == 0:
        return 0, 0
    sig, k = _round_bits(num, den, 53)  # the double; frexp: q = sig / 2**53, shift = 53 - k
    shift = 53 - k
    q_fixed = (sig + (1 << 21)) >> 22  # round(q * 2**31), half away from zero
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def _ratio(*parts):
    """num/den of a product of (mantissa, exponent) pairs, each with a sign of +1 (multiply) or -1."""
    num, den, e = 1, 1, 0
    for (m, x), sign in parts:
        if sign > 0:
            num *= m
            e += x
        else:
            den *= m
            e -= x
    return (num << e, den) if e >= 0 else (num, den << -e)


# ---- fixed point (tensorflow/lite/kernels/internal/common.h, gemmlowp/fixedpoint) ----

def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    t = ab + nudge
    q = t >> 31 if t >= 0 else -((-t) >> 31)  # C division truncates toward zero
    return q


def rdbpot(x, exponent):
    """RoundingDivideByPOT."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier (double rounding, TFLM's default)."""
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return rdbpot(srdhm(x * (1 << left), multiplier), right)


def _sat_shift_left(x, exponent):
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return x << exponent


def _rescale(x, src_int_bits, dst_int_bits):
    e = src_int_bits - dst_int_bits
    if e > 0:
        return _sat_shift_left(x, e)
    if e < 0:
        return rdbpot(x, -e)
    return x


def _exp_quarter(a):
    """exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31."""
    x = a + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbpot(x4, 2)
    poly = rdbpot(srdhm(x4_over_4 + x3, 715827883) + x2, 1)
    return 1895147668 + srdhm(1895147668, x + poly)


_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, int_bits=5):
    """gemmlowp exp_on_negative_values for a Q(int_bits).(31-int_bits) input <= 0; result Q0.31."""
    frac_bits = 31 - int_bits
    quarter = 1 << (frac_bits - 2)
    mask = quarter - 1
    a_mod = (a & mask) - quarter
    result = _exp_quarter(_rescale(a_mod, int_bits, 0))
    remainder = a_mod - a
    for exponent, multiplier in _BARREL:
        if int_bits > exponent:
            if remainder & (1 << (frac_bits + exponent)):
                result = srdhm(result, multiplier)
    if a == 0:
        result = INT32_MAX
    return result


def _one_over_one_plus_x(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1, Q0.31 in and out."""
    s = a + INT32_MAX  # RoundingHalfSum(a, One)
    half_den = (s + 1) // 2 if s >= 0 else -((-s + 1) // 2)
    x = 1515870810 + srdhm(half_den, -1010580540)  # Q2.29: 48/17 - 32/17 * d
    for _ in range(3):
        one_minus = (1 << 29) - srdhm(half_den, x)
        x = x + _rescale(srdhm(x, one_minus), 4, 2)
    return _rescale(x, 1, 0)


def get_reciprocal(x, x_int_bits):
    """tflite GetReciprocal: (Q0.31 reciprocal, num_bits_over_unit)."""
    headroom_plus_one = 32 - _bitlen(x & 0xFFFFFFFF)
    num_bits_over_unit = x_int_bits - headroom_plus_one
    shifted_minus_one = (((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    if shifted_minus_one >= 1 << 31:
        shifted_minus_one -= 1 << 32
    return _one_over_one_plus_x(shifted_minus_one), num_bits_over_unit


# ---- layers ----

class FullyConnected:
    def __init__(self, graph, op):
        t = graph.tensors
        inp, w = t[op.inputs[0]], t[op.inputs[1]]
        bias = t[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        out = t[op.outputs[0]]
        if inp.type != tflite.INT8 or w.type != tflite.INT8 or out.type != tflite.INT8 or len(w.shape) != 2:
            raise KernelError("FULLY_CONNECTED: expected int8 input, weights and output")
        self.n_out, self.n_in = w.shape
        if len(w.data) != self.n_out * self.n_in:
            raise KernelError("FULLY_CONNECTED: weights do not match their shape")
        wd = w.data
        self.rows = [bytes(wd[r * self.n_in:(r + 1) * self.n_in]) for r in range(self.n_out)]
        self.bias = [0] * self.n_out
        if bias is not None:
            if bias.type != tflite.INT32 or len(bias.data) != 4 * self.n_out:
                raise KernelError("FULLY_CONNECTED: expected an int32 bias per output")
            import struct
            self.bias = list(struct.unpack("<%di" % self.n_out, bias.data))
        self.input_offset = -inp.zero_point
        self.output_offset = out.zero_point
        in_s = f32_parts(inp.scale_bits[0])
        out_s = f32_parts(out.scale_bits[0])
        if len(w.scale_bits) > 1:  # PopulateConvolutionQuantizationParams: double(in) * double(w) / double(out)
            if len(w.scale_bits) != self.n_out:
                raise KernelError("FULLY_CONNECTED: expected one weight scale per output channel")
            self.quant = [quantize_multiplier(*_ratio((in_s, 1), (f32_parts(b), 1), (out_s, -1))) for b in w.scale_bits]
        else:  # GetQuantizedConvolutionMultipler: double(float(in * w)) / double(out)
            prod = _round_bits(in_s[0] * f32_parts(w.scale_bits[0])[0], 1, 24)
            p = (prod[0], in_s[1] + f32_parts(w.scale_bits[0])[1] - prod[1])
            self.quant = [quantize_multiplier(*_ratio((p, 1), (out_s, -1)))] * self.n_out
        if op.activation == tflite.ACT_NONE:
            self.act_min = -128
        elif op.activation == tflite.ACT_RELU:
            self.act_min = max(-128, out.zero_point)
        else:
            raise KernelError("FULLY_CONNECTED: fused activation %d is not supported" % op.activation)
        self.act_max = 127

    def __call__(self, x):
        xs = [v + self.input_offset for v in x]
        out = []
        for r in range(self.n_out):
            row = self.rows[r]
            acc = self.bias[r]
            for i in range(self.n_in):
                w = row[i]
                acc += (w - 256 if w > 127 else w) * xs[i]
            m, s = self.quant[r]
            v = mbqm(acc, m, s) + self.output_offset
            out.append(self.act_min if v < self.act_min else (self.act_max if v > self.act_max else v))
        return out


class Softmax:
    def __init__(self, graph, op):
        inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        if inp.type != tflite.INT8 or out.type != tflite.INT8:
            raise KernelError("SOFTMAX: expected int8 input and output")
        if out.zero_point != -128 or out.scale_bits[0] != 0x3B800000:
            raise KernelError("SOFTMAX: expected the int8 output scale 1/256 and zero point -128")
        beta = f32_parts(op.beta_bits)
        in_s = f32_parts(inp.scale_bits[0])
        num, den = _ratio((beta, 1), (in_s, 1), ((1, 26), 1))  # beta * scale * 2**(31 - 5)
        if num >= ((1 << 31) - 1) * den:
            num, den = (1 << 31) - 1, 1
        if num <= den:
            raise KernelError("SOFTMAX: input multiplier not above one")
        self.multiplier, self.left_shift = quantize_multiplier(num, den)
        self.diff_min = -((31 << 26) >> self.left_shift)

    def __call__(self, x):
        mx = max(x)
        diffs = [v - mx for v in x]
        scaled = [srdhm(d * (1 << self.left_shift), self.multiplier) if d >= self.diff_min else None for d in diffs]
        exps = [exp_on_negative_values(s) if s is not None else None for s in scaled]
        total = 0
        for e in exps:
            if e is not None:
                total += _rescale(e, 0, 12)
        recip, bits_over = get_reciprocal(total, 12)
        out = []
        for e in exps:
            if e is None:
                out.append(-128)
                continue
            v = rdbpot(srdhm(recip, e), bits_over + 31 - 8) - 128
            out.append(-128 if v < -128 else (127 if v > 127 else v))
        return out


class Model:
    """The int8 graph: FULLY_CONNECTED and SOFTMAX layers in order, input and output sizes."""

    def __init__(self, model_bytes):
        g = tflite.parse(model_bytes)
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise KernelError("expected one input and one output tensor")
        self.layers = []
        for op in g.ops:
            if op.code == tflite.FULLY_CONNECTED:
                self.layers.append(FullyConnected(g, op))
            elif op.code == tflite.SOFTMAX:
                self.layers.append(Softmax(g, op))
            else:
                raise KernelError("operator %d is not supported" % op.code)
        shape_in, shape_out = g.tensors[g.inputs[0]].shape, g.tensors[g.outputs[0]].shape
        self.n_in = shape_in[-1] if shape_in else 0
        self.n_out = shape_out[-1] if shape_out else 0

    def invoke(self, q):
        x = list(q)
        for layer in self.layers:
            x = layer(x)
        return x
