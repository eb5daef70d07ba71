"""The one exception tree of otaml.

Every refusal the user can cause is an ``OtamlError`` whose message says what was expected and what
arrived. The CLI turns these into one line and exit code 2; the API turns them into 4xx responses with
the same text in ``detail`` and the class name in ``error``.
"""


class OtamlError(Exception):
    """Base of every expected failure. ``status`` is the HTTP status the API answers with."""

    status = 400


class ConfigError(OtamlError):
    """A setting is missing or insecure."""


class VersionError(OtamlError):
    """A version string is malformed, or does not sort where it must."""


class DowngradeError(VersionError):
    status = 409


class LegacyOrderError(VersionError):
    """Numeric (legacy) clients would not see the new version as newer."""

    status = 409


class ImageError(OtamlError):
    """The binary is not a genuine app image for the target, or its description disagrees."""

    status = 422


class SigningError(OtamlError):
    """A key cannot be read or written, or a signature does not verify."""


class KeyFileError(SigningError):
    """A key file is missing, unreadable, of the wrong type, or would be overwritten."""


class SignatureError(SigningError):
    status = 422


class UnknownKeyError(SigningError):
    status = 403


class ManifestError(OtamlError):
    """A manifest does not follow manifests/README.md."""

    status = 422


class ReleaseExistsError(OtamlError):
    """A published version is immutable."""

    status = 409


class ChannelChipError(OtamlError):
    """A channel serves one chip, the one of its first release."""

    status = 409


class PinError(OtamlError):
    """A pin the device could not follow: not a release of its channel, or older than what it runs."""

    status = 409


class ConflictError(OtamlError):
    """Someone else published first; the manifest_version is taken."""

    status = 409


class NotFoundError(OtamlError):
    status = 404


class AuthError(OtamlError):
    status = 401


class ServerError(OtamlError):
    """The release server refused a request or could not be reached (CLI side)."""


class RolloutError(OtamlError):
    """A rollout cannot do what was asked in its current state (or the release is not staged)."""

    status = 409


class FieldError(OtamlError):
    """A header, cookie, query, path or body field does not have the shape its type requires."""

    status = 422


class BadRequestError(OtamlError):
    """A request the server cannot read: malformed JSON, too deeply nested, not UTF-8."""


class BodyTooLargeError(OtamlError):
    """A request body beyond the route's limit (refused while it streams in)."""

    status = 413


class BodyTimeoutError(OtamlError):
    """A request body that arrived too slowly (ended, so slow uploads cannot hold the server)."""

    status = 408


class PendingApprovalError(OtamlError):
    """A claimed device that no operator has accepted yet (`release device accept ID`)."""

    status = 403


class RateLimitError(OtamlError):
    """Too many attempts from one client (claiming)."""

    status = 429


class KeySetError(OtamlError):
    """A key-set document or its signature that the server (or a device) would refuse."""

    status = 422


class TestKeyError(OtamlError):
    """One of the repository's test keys, outside development."""

    status = 403
