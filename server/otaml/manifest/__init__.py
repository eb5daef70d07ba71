"""The signed manifest (firmware.json): its format, its version rules and its signatures.

manifests/README.md is the normative description; this package is its Python implementation.
"""
