# Generated at build time by board/manifest.py from firmware/model (the frozen model package).
MODEL: bytes
CARD: bytes
SAMPLES: bytes
