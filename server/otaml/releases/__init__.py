"""Releases and their signed manifests: accepting a publish, re-signing, and serving polls."""
