"""Release versions: 1 to 3 dot-separated numbers, compared as integers (manifests/README.md)."""


def parse(text):
    """(major, minor, patch) of "1.2" or "1.2.3" (no leading zeros, components <= 65535), else None."""
    if not isinstance(text, str) or not text:
        return None
    parts = text.split(".")
    if len(parts) > 3:
        return None
    out = []
    for p in parts:
        if not 1 <= len(p) <= 5 or (len(p) > 1 and p[0] == "0"):
            return None
        for ch in p:
            if not "0" <= ch <= "9":
                return None
        v = int(p)
        if v > 65535:
            return None
        out.append(v)
    while len(out) < 3:
        out.append(0)
    return tuple(out)


def compare(a, b):
    """<0, 0, >0 as version tuple a sorts before, equal to, after b."""
    return (a > b) - (a < b)
