"""otaml: over-the-air releases for ESP32 fleets that run ML models."""

__version__ = "0.1.0"
