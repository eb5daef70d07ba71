"""The URL layout shared by the API server and the static mirror."""


def binary_path(sha256: str, filename: str) -> str:
    return f"/binaries/{sha256}/{filename}"


def manifest_path(channel: str) -> str:
    return f"/channels/{channel}/firmware.json"
