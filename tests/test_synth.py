import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy.stats import chisquare

from lumbar.errors import InputError
from lumbar.paper import table5_counts
from lumbar.synth import (
    SynthConfig,
    disc_state_frequencies,
    draw_discs,
    draw_patient_discs,
    write_pacs_export,
)


def _series(folder: Path) -> dict[int, list[pydicom.Dataset]]:
    series: dict[int, list] = {}
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        series.setdefault(int(ds.SeriesNumber), []).append(ds)
    return series


def test_export_layout_and_tags(synthetic_export):
    patients = sorted(p.name for p in synthetic_export.iterdir() if p.is_dir())
    assert patients == [f"P{i:06d}" for i in range(1, 9)]
    truth = list(csv.DictReader((synthetic_export / "truth.csv").open()))
    first = _series(synthetic_export / "P000001")
    assert sorted(first) == [1, 2, 3, 4, 5, 6]
    row = next(r for r in truth if r["patient_id"] == "P000001")
    assert 13 <= len(first[3]) <= 17 and len(first[3]) == int(row["sagittal_frames"])
    assert 25 <= len(first[5]) <= 30 and len(first[5]) == int(row["axial_frames"])
    assert 1 <= len(first[6]) <= 4
    ds = first[5][0]
    assert ds.Modality == "MR" and ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
    for keyword in (
        "RescaleSlope",
        "RescaleIntercept",
        "PixelSpacing",
        "SliceThickness",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "EchoTime",
        "RepetitionTime",
        "SeriesDescription",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "InstitutionName",
    ):
        assert keyword in ds, keyword
    assert ds.pixel_array.dtype == np.uint16 and ds.pixel_array.max() > 0
    # files are named by SOP Instance UID, not by order
    assert all(
        p.stem == pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
        for p in list((synthetic_export / "P000001").glob("*.dcm"))[:5]
    )


def test_labels_match_ground_truth(synthetic_export):
    truth = {(r["patient_id"], r["disc"]): r for r in csv.DictReader((synthetic_export / "truth.csv").open())}
    labels = list(csv.DictReader((synthetic_export / "labels.csv").open()))
    assert len(labels) == len(truth) == 8 * 5
    for row in labels:
        t = truth[(row["patient_id"], row["disc"])]
        assert [row[k] for k in ("disc_state", "herniation", "scs", "rfs", "lfs")] == [
            t[k] for k in ("disc_state", "herniation", "scs", "rfs", "lfs")
        ]
        assert (row["herniation"] != "0") == (row["disc_state"] == "3")


def test_same_seed_same_export(tmp_path):
    a = write_pacs_export(tmp_path / "a", SynthConfig(patients=1, seed=5, size=64))
    b = write_pacs_export(tmp_path / "b", SynthConfig(patients=1, seed=5, size=64))
    names_a = sorted(p.name for p in (a / "P000001").iterdir())
    assert names_a == sorted(p.name for p in (b / "P000001").iterdir())
    assert (a / "P000001" / names_a[0]).read_bytes() == (b / "P000001" / names_a[0]).read_bytes()
    c = write_pacs_export(tmp_path / "c", SynthConfig(patients=1, seed=6, size=64))
    assert (a / "labels.csv").read_text() != (c / "labels.csv").read_text() or names_a != sorted(
        p.name for p in (c / "P000001").iterdir()
    )


def test_compressed_exports_decode(tmp_path):
    out = write_pacs_export(tmp_path / "x", SynthConfig(patients=1, seed=2, size=64, compression="j2k"))
    ds = pydicom.dcmread(next((out / "P000001").glob("*.dcm")))
    assert ds.file_meta.TransferSyntaxUID.name.startswith("JPEG 2000")
    assert ds.pixel_array.shape in {(64, 64), (32, 32)} or ds.pixel_array.shape[0] >= 32


#: Table 5 as counts per level in the order of the disc-state grades (normal, degeneration, bulge, herniation).
TABLE5 = {disc: tuple(counts.values()) for disc, counts in table5_counts().items()}
FREQUENCIES = disc_state_frequencies()


def _state_counts(draws: list[list]) -> dict[str, list[int]]:
    """Disc states counted per level over many patients' drawn discs."""
    counts: dict[str, list[int]] = {disc: [0, 0, 0, 0] for disc in TABLE5}
    for discs in draws:
        for d in discs:
            counts[d.disc][d.disc_state] += 1
    return counts


def _table5_p_values(counts: dict[str, list[int]]) -> dict[str, float]:
    """Chi-square goodness-of-fit p-value of each level's counts against Table 5's proportions.

    A state Table 5 never shows at a level (herniation at L1-L4) is no cell of the test: the generator
    must never draw it, which is asserted apart.
    """
    p_values = {}
    for disc, paper in TABLE5.items():
        kept = [i for i, c in enumerate(paper) if c > 0]
        observed = np.array([counts[disc][i] for i in kept])
        expected = np.array([paper[i] for i in kept]) / sum(paper) * observed.sum()
        assert expected.min() >= 5, "too few patients for a chi-square test"
        p_values[disc] = float(chisquare(observed, expected).pvalue)
    return p_values


def test_state_frequencies_follow_table5():
    """1,000 patients drawn as an export draws them: every level's states fit the paper's Table 5."""
    config = SynthConfig(patients=1000, seed=0)
    counts = _state_counts([draw_patient_discs(config, n) for n in range(1, config.patients + 1)])
    for disc, paper in TABLE5.items():
        assert all(counts[disc][i] == 0 for i, c in enumerate(paper) if c == 0), (disc, counts[disc])
    p_values = _table5_p_values(counts)
    assert min(p_values.values()) > 0.001, (p_values, counts)
    normal = sum(c[0] for c in counts.values()) / 5000
    assert abs(normal - 545 / 905) < 0.02  # the paper's class balance: about 60% normal


@pytest.mark.parametrize(
    "wrong",
    [
        {disc: (0.25, 0.25, 0.25, 0.25) for disc in TABLE5},  # uniform
        {**FREQUENCIES, "L45": FREQUENCIES["L51"], "L51": FREQUENCIES["L45"]},
        {  # the invented table this generator used before Table 5
            "L12": (0.80, 0.08, 0.09, 0.03),
            "L23": (0.72, 0.10, 0.14, 0.04),
            "L34": (0.52, 0.13, 0.27, 0.08),
            "L45": (0.22, 0.14, 0.46, 0.18),
            "L51": (0.30, 0.17, 0.33, 0.20),
        },
    ],
    ids=["uniform", "L45-L51-swapped", "previous"],
)
def test_chi_square_rejects_a_wrong_table(wrong):
    """The same check, on as many patients drawn with other frequencies, fails: it has the power to."""
    rng = np.random.default_rng(0)
    counts = _state_counts([draw_discs(rng, wrong) for _ in range(1000)])
    assert min(_table5_p_values(counts).values()) < 1e-6


def test_config_validation():
    with pytest.raises(InputError, match="compression"):
        SynthConfig(compression="zip")
    with pytest.raises(InputError, match="patients"):
        SynthConfig(patients=0)
