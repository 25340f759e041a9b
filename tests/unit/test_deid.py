import pytest

from lumbar.deid import IdentifierGuard, IdentifierLeakError, Pseudonymizer, name_variants
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


def test_the_guard_finds_whole_word_sequences_and_never_rewrites():
    guard = IdentifierGuard(["P000123", "ROSSI^MARIO", *name_variants("DOE^JANE"), "12", "7"])
    assert guard.found_in("file of p000123 here") and guard.found_in("Rossi Mario") and guard.found_in("doe_jane")
    assert not guard.found_in("P0001234") and not guard.found_in("rossi") and not guard.found_in("DOEJANEX")
    # identifiers made only of digits are not searched for: counts and frame numbers would all match them
    assert not guard.found_in("image 12 of 7 frames")
    report = {"files": [{"file": "F0", "reason": "image 1"}], "patients": [{"notes": ["seen by rossi^mario"]}]}
    with pytest.raises(
        IdentifierLeakError, match=r"report.json would hold a patient identifier in patients\[0\]\.notes\[0\]"
    ):
        guard.check_json(report, "report.json")
    with pytest.raises(IdentifierLeakError, match=r"datacard\.md would hold a patient identifier in line 2") as caught:
        guard.check_text("# card\nPatient P000123\n", "datacard.md")
    assert "P000123" not in str(caught.value)
    assert "DOE JANE" in name_variants("DOE^JANE") and "DOE_JANE" in name_variants("DOE^JANE")


def test_the_guard_costs_time_linear_in_the_text():
    """Issue 29 case 8: a department-wide grading file (thousands of ids) made the old scrubber quadratic."""
    import time

    def seconds(n):
        guard = IdentifierGuard([f"MRN{i:07d}" for i in range(n)] + [f"FAMILY{i}^GIVEN{i}" for i in range(n)])
        text = " ".join(f"line {i} of patient S{i:016x} quarantined" for i in range(n))
        started = time.perf_counter()
        assert not guard.found_in(text)
        guard.check_json({"rows": [{"reason": f"frame {i}"} for i in range(n)]}, "report.json")
        return time.perf_counter() - started

    seconds(500)  # warm-up
    small, large = min(seconds(2000) for _ in range(3)), min(seconds(8000) for _ in range(3))
    assert large / small < 8, (small, large)  # 4x the input: about 4x the time (quadratic would be 16x)


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
