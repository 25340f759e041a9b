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
    p = Pseudonymizer.from_env("MY_SECRET", {"MY_SECRET": "a-long-enough-key-Qz81"})
    assert not p.ephemeral
    assert p.pseudonym("X") == Pseudonymizer(b"a-long-enough-key-Qz81").pseudonym("X")
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


def test_placeholder_and_weak_secrets_are_refused_from_the_environment():
    for value, why in (
        ("change-me-to-at-least-32-random-characters", "placeholder"),
        ("an-EXAMPLE-value-0123456789", "placeholder"),
        ("zzzzzzzzzzzzzzzzzzzzzzzz", "entropy"),
        ("k3Y-9", "16 bytes"),
    ):
        with pytest.raises(InputError, match=why) as caught:
            Pseudonymizer.from_env(None, {"LUMBAR_PSEUDONYM_SECRET": value})
        assert value not in str(caught.value) and "\n" not in str(caught.value)


def test_file_tokens_are_keyed_and_take_any_bytes():
    a, b = Pseudonymizer(b"first-key-0123456789"), Pseudonymizer(b"other-key-0123456789")
    name = b"P1/caf\xe9.dcm".decode("utf-8", "surrogateescape")  # a Latin-1 file name read back by os.listdir
    token = a.file_token(name)
    assert token.startswith("F") and len(token) == 17 and token != b.file_token(name)
    assert token == a.file_token(name) != a.file_token("P1/cafe.dcm")
