"""ECDSA P-256 / SHA-256 verification in pure Python (stock MicroPython has no ECDSA verify).

Security-critical. Jacobian coordinates with a = -3, Shamir's trick over G, Q and G+Q, and no modular
inversion inside the loop: the final comparison is x == r * Z^2 (mod p), so the only inversions are
s^-1 mod n and one for G+Q, both by Fermat (MicroPython's pow(x, -1, m) returns 0).
Only integers: nothing here depends on the width of the platform's float.
"""

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5


def on_curve(x, y):
    """y^2 = x^3 - 3x + b over GF(p), with both coordinates reduced."""
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x - 3 * x + B)) % P == 0


def _double(X1, Y1, Z1):
    # dbl-2001-b (a = -3)
    if Z1 == 0 or Y1 == 0:
        return 0, 1, 0
    delta = Z1 * Z1 % P
    gamma = Y1 * Y1 % P
    beta = X1 * gamma % P
    alpha = 3 * (X1 - delta) * (X1 + delta) % P
    X3 = (alpha * alpha - 8 * beta) % P
    Z3 = ((Y1 + Z1) * (Y1 + Z1) - gamma - delta) % P
    Y3 = (alpha * (4 * beta - X3) - 8 * gamma * gamma) % P
    return X3, Y3, Z3


def _add_affine(X1, Y1, Z1, x2, y2):
    # madd-2004-hmv: Jacobian + affine
    if Z1 == 0:
        return x2, y2, 1
    t1 = Z1 * Z1 % P
    t2 = t1 * Z1 % P
    h = (t1 * x2 - X1) % P
    r = (t2 * y2 - Y1) % P
    if h == 0:
        if r == 0:
            return _double(X1, Y1, Z1)
        return 0, 1, 0
    Z3 = Z1 * h % P
    h2 = h * h % P
    h3 = h2 * h % P
    x1h2 = X1 * h2 % P
    X3 = (r * r - h3 - 2 * x1h2) % P
    Y3 = (r * (x1h2 - X3) - Y1 * h3) % P
    return X3, Y3, Z3


def _to_affine(X, Y, Z):
    if Z == 0:
        return None
    zi = pow(Z, P - 2, P)
    zi2 = zi * zi % P
    return X * zi2 % P, Y * zi2 * zi % P


def verify_digest(qx, qy, digest, r, s):
    """True when (r, s) is a valid signature of the 32-byte SHA-256 digest under the public point Q.

    Refuses: r or s outside [1, n-1]; a point Q not on the curve; a sum u1*G + u2*Q at infinity; an
    x coordinate that is not r modulo n.
    """
    if not (0 < r < N and 0 < s < N) or not on_curve(qx, qy):
        return False
    e = int.from_bytes(digest, "big") % N
    w = pow(s, N - 2, N)
    u1 = e * w % N
    u2 = r * w % N
    gq = _to_affine(*_add_affine(GX, GY, 1, qx, qy))
    table = (None, (GX, GY), (qx, qy), gq)
    b1 = u1.to_bytes(32, "big")
    b2 = u2.to_bytes(32, "big")
    X, Y, Z = 0, 1, 0
    for i in range(32):
        c1 = b1[i]
        c2 = b2[i]
        for bit in (7, 6, 5, 4, 3, 2, 1, 0):
            X, Y, Z = _double(X, Y, Z)
            idx = ((c1 >> bit) & 1) | (((c2 >> bit) & 1) << 1)
            if idx:
                pt = table[idx]
                if pt is None:  # G + Q is the point at infinity (Q = -G): adding it changes nothing
                    continue
                X, Y, Z = _add_affine(X, Y, Z, pt[0], pt[1])
    if Z == 0:
        return False
    z2 = Z * Z % P
    if X == r * z2 % P:
        return True
    return r + N < P and X == (r + N) * z2 % P
