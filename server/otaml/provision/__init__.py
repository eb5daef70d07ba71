"""Factory provisioning: a device list in, one NVS partition image per device out (release provision)."""
