import pytest

from lumbar.dataset_c import _write_scrubbed
from lumbar.deid import Pseudonymizer, name_variants
from lumbar.errors import InputError


def test_pseudonyms_are_stable_and_keyed():
    a = Pseudonymizer(b"secret-one-0123456789")
    b = Pseudonymizer(b"secret-two-0123456789")
    assert a.pseudonym("P000123") == Pseudonymizer(b"secret-one-0123456789").pseudonym("P000123")
    assert a.pseudonym("P000123") != b.pseudonym("P000123")
    assert a.pseudonym("P000123") != a.pseudonym("P000124")
    assert a.pseudonym("P000123").startswith("S") and len(a.pseudonym("P000123")) == 17
    assert "P000123" not in a.pseudonym("P000123")


def test_secret_from_environment():
    p = Pseudonymizer.from_env("MY_SECRET", {"MY_SECRET": "a-long-enough-secret-value"})
    assert not p.ephemeral
    assert p.pseudonym("X") == Pseudonymizer(b"a-long-enough-secret-value").pseudonym("X")
    with pytest.raises(InputError, match="MY_SECRET"):
        Pseudonymizer.from_env("MY_SECRET", {})
    random_one = Pseudonymizer.from_env(None, {})
    assert random_one.ephemeral
    assert random_one.pseudonym("X") != Pseudonymizer.from_env(None, {}).pseudonym("X")
    with pytest.raises(InputError, match="16 bytes"):
        Pseudonymizer(b"short")


def test_scrubbing_replaces_whole_tokens_only(tmp_path):
    ids = {"P000123": "Sabc", "12": "Sdef", "ROSSI^MARIO": "Sabc"}
    _write_scrubbed(tmp_path / "x.txt", "P000123/file 12 and 123 and rossi^mario", ids)
    assert (tmp_path / "x.txt").read_text() == "Sabc/file Sdef and 123 and Sabc"
    assert "DOE JANE" in name_variants("DOE^JANE") and "DOE_JANE" in name_variants("DOE^JANE")
