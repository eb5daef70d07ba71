import pytest

from otaml.core.errors import DowngradeError, LegacyOrderError, VersionError
from otaml.manifest.versions import Version, check_successor


@pytest.mark.parametrize("text,parts,number", [
    ("1.2", (1, 2, 0), 1.2), ("1.10", (1, 10, 0), 1.1), ("2", (2, 0, 0), 2.0),
    ("1.2.3", (1, 2, 3), 1.2), ("0.9", (0, 9, 0), 0.9), ("10.05".replace("05", "5"), (10, 5, 0), 10.5),
])
def test_parse(text, parts, number):
    v = Version.parse(text)
    assert v.parts == parts and v.legacy_number == number


@pytest.mark.parametrize("text", ["", "v1.2", "1.2.3.4", "01.2", "1.02", "1..2", "1.2-rc1", "1.70000", " 1.2"])
def test_parse_refuses(text):
    with pytest.raises(VersionError, match="expected"):
        Version.parse(text)


def test_components_compare_as_integers():
    assert Version.parse("1.10") > Version.parse("1.9")
    assert Version.parse("1.2") == Version.parse("1.2.0")
    assert Version.parse("1.2.1") > Version.parse("1.2")


def test_successor_rules():
    check_successor(Version.parse("1.2"), None)
    check_successor(Version.parse("1.3"), Version.parse("1.2"))
    check_successor(Version.parse("2.0"), Version.parse("1.9"))
    with pytest.raises(DowngradeError, match="not newer than the current release 1.2"):
        check_successor(Version.parse("1.2"), Version.parse("1.2"))
    with pytest.raises(LegacyOrderError, match=r"reads as 1.1 .* e.g. 2.0"):
        check_successor(Version.parse("1.10"), Version.parse("1.9"))
    with pytest.raises(LegacyOrderError, match="e.g. 1.3"):
        check_successor(Version.parse("1.2.1"), Version.parse("1.2"))
    check_successor(Version.parse("1.10"), Version.parse("1.9"), legacy_clients=False)
