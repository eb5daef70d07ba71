"""The URL layout shared by the API server and the static mirror."""


def binary_url(base_url: str, sha256: str, filename: str) -> str:
    """The absolute `file` URL of a content-addressed binary."""
    return f"{base_url}/binaries/{sha256}/{filename}"


def manifest_path(channel: str) -> str:
    return f"/channels/{channel}/firmware.json"
