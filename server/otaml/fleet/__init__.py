"""Devices: the check-in protocol, batched check-in recording, update events."""
