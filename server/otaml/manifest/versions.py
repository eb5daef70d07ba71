"""Release versions: dotted numbers, compared as integers, plus the legacy number.

The seed recipe's device reads ``version`` as a JSON number and compares it as a double with its
compiled-in version. For such a client "1.10" is 1.1, which is below 1.9, so a release that sorts
above the current one by its components can still look older to them. ``legacy_number`` is what those
clients see; publishing refuses a version whose legacy number does not rise (LegacyOrderError).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from otaml.core.errors import DowngradeError, LegacyOrderError, VersionError

# 1 to 3 components, no leading zeros (so each version has exactly one spelling), each fitting 16 bits so
# the firmware can hold a component in a uint16_t. Matches esp_app_desc_t.version when the build sets it.
_VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,4})(\.(0|[1-9][0-9]{0,4})){0,2}")
MAX_COMPONENT = 65535


@total_ordering
@dataclass(frozen=True)
class Version:
    text: str
    parts: tuple[int, int, int]

    @classmethod
    def parse(cls, text: str) -> Version:
        if not isinstance(text, str) or not _VERSION_RE.fullmatch(text):  # fullmatch: no trailing newline
            raise VersionError(
                f"expected a version of 1 to 3 dot-separated numbers without leading zeros "
                f"(like 1.2 or 1.2.3), got {text!r}"
            )
        nums = [int(p) for p in text.split(".")]
        if any(n > MAX_COMPONENT for n in nums):
            raise VersionError(f"expected version components of at most {MAX_COMPONENT}, got {text!r}")
        while len(nums) < 3:
            nums.append(0)
        return cls(text, (nums[0], nums[1], nums[2]))

    @property
    def legacy_number(self) -> float:
        """What a client that compares ``version`` as a double sees: MAJOR.MINOR as a decimal."""
        minor_text = self.text.split(".")[1] if "." in self.text else "0"
        return float(f"{self.parts[0]}.{minor_text}")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.parts < other.parts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.parts == other.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __str__(self) -> str:
        return self.text


def check_successor(new: Version, current: Version | None, *, legacy_clients: bool = True) -> None:
    """Refuse ``new`` unless it sorts above ``current`` for every client that may poll.

    Raises:
        DowngradeError: ``new`` is not above ``current`` by its components.
        LegacyOrderError: ``new`` is above by components, but its legacy number is not above the
            current one, so numeric clients would never take it. ``legacy_clients=False`` accepts it.
    """
    if current is None:
        return
    if not new > current:
        raise DowngradeError(
            f"version {new} is not newer than the current release {current}: expected a version above "
            f"{current} (published versions only move forward)"
        )
    if legacy_clients and not new.legacy_number > current.legacy_number:
        raise LegacyOrderError(
            f"version {new} reads as {new.legacy_number:g} to clients that compare `version` as a number, "
            f"which is not above the current {current} ({current.legacy_number:g}); expected a number that "
            f"sorts higher, e.g. {_legacy_hint(current)}; pass --no-legacy-clients if no device compares "
            f"numbers"
        )


def _legacy_hint(current: Version) -> str:
    major, minor, _ = current.parts
    minor_text = current.text.split(".")[1] if "." in current.text else "0"
    # The next decimal above MAJOR.MINOR keeps the same number of digits when it can (1.9 -> 1.91 would
    # also work, but 2.0 is what people mean).
    if set(minor_text) == {"9"}:
        return f"{major + 1}.0"
    return f"{major}.{int(minor_text) + 1:0{len(minor_text)}d}"
