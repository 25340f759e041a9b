"""No patient identifier leaves a build, whatever the export looks like (issue 17, "Identifiers").

The export is written with identifiers in its folder names (accession numbers, names, institution,
birth dates) and in every SeriesDescription; every output of a build is then searched, as bytes and
case-insensitively, for every identifier the export holds.
"""

import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from lumbar.deid import Pseudonymizer, check_secret, name_variants
from lumbar.errors import InputError
from lumbar.synth import SynthConfig, write_pacs_export

from .conftest import TEST_SECRET, TEST_SECRET_ENV

LUMBAR = str(Path(sys.executable).with_name("lumbar"))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def phi_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("phi") / "export"
    write_pacs_export(out, SynthConfig(patients=3, seed=5, size=64, phi_folders=True))
    return out


def _identifiers(export: Path) -> set[str]:
    """Every identifier the export holds: header values, UIDs, free text, and every folder and file name."""
    found: set[str] = set()
    for path in export.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        name = str(ds.PatientName)
        born = str(ds.PatientBirthDate)
        found |= {str(ds.PatientID), name, *name_variants(name), *name.split("^"), born}
        found |= {f"{born[:4]}-{born[4:6]}-{born[6:]}", str(ds.InstitutionName), str(ds.AccessionNumber)}
        found |= {str(ds.ReferringPhysicianName), str(ds.SeriesDescription)}
        found |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)}
        relative = path.relative_to(export)
        found |= {relative.as_posix(), *relative.parts[:-1], relative.stem}
    return {s for s in found if len(s) >= 4}


def test_the_export_really_carries_identifiers_in_its_paths(phi_export):
    folders = {p.relative_to(phi_export).parts[0] for p in phi_export.rglob("*.dcm")}
    assert any(f.startswith("A") and f[1:].isdigit() for f in folders)  # <accession>/<NAME>/...
    assert (
        "St. Elsewhere General Hospital" in folders
        or "Clinica Fictiva del Norte" in folders
        or any(" " in f for f in folders)
    )
    ds = pydicom.dcmread(next(phi_export.rglob("*.dcm")), stop_before_pixels=True)
    assert str(ds.AccessionNumber) in str(ds.SeriesDescription)


def test_no_identifier_in_any_output(phi_export, tmp_path):
    identifiers = _identifiers(phi_export)
    assert len(identifiers) > 100
    out, key = tmp_path / "dataset", tmp_path / "keys" / "key.csv"
    env = {**os.environ, TEST_SECRET_ENV: TEST_SECRET}
    args = ["dataset", "build", "--source", phi_export, "--labels", phi_export / "labels.csv", "--out", out]
    run = subprocess.run(
        [LUMBAR, *args, "--key-secret-env", TEST_SECRET_ENV, "--write-key", key],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "3 patients" in run.stdout
    from lumbar.steps.build_dataset_c import build_dataset_c_step

    os.environ["LUMBAR_PSEUDONYM_SECRET"] = TEST_SECRET
    try:  # the pipeline step: its metadata (KFP artifact metadata) and its dataset
        built = build_dataset_c_step(
            export_uri=str(phi_export),
            out=tmp_path / "step",
            workers=1,
            labels_uri="",
            publish_to="",
            split_by="patient",
            seed=0,
            fractions="",
        )
        info = built.metadata()
    finally:
        del os.environ["LUMBAR_PSEUDONYM_SECRET"]
    outputs = {p: p.read_bytes() for base in (out, tmp_path / "step") for p in base.rglob("*") if p.is_file()}
    outputs[Path("stdout+stderr")] = (run.stdout + run.stderr).encode()
    outputs[Path("step metadata")] = json.dumps(info).encode()
    assert len(outputs) > 2 * 3 * 12
    lowered = [s.lower().encode() for s in sorted(identifiers)]
    for path, data in outputs.items():
        data = data.lower() + path.as_posix().lower().encode()
        leaked = [s.decode() for s in lowered if s in data]
        assert not leaked, f"{path}: {leaked[:5]}"
    # every input is named by its keyed token; the token -> path map lies beside the key, mode 0600
    report = json.loads((out / "report.json").read_text())
    tokens = {f["file"] for f in report["files"]}
    files_key = key.with_name("key-files.csv")
    mapped = {r["file"]: r["source_path"] for r in csv.DictReader(files_key.open())}
    inputs = {p.relative_to(phi_export).as_posix() for p in phi_export.rglob("*") if p.is_file()}
    assert tokens == set(mapped) and set(mapped.values()) == inputs
    pseudonymizer = Pseudonymizer(TEST_SECRET.encode())
    assert all(pseudonymizer.file_token(path) == token for token, path in mapped.items())
    for path in (key, files_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kinds = {f["series"] for f in report["files"] if f["series"]}
    assert kinds <= {"localizer", "sag_t1", "sag_t2", "ax_t1", "ax_t2", "myelo", "other"} and "ax_t2" in kinds
    assert any("of kind sag_t1" in f["reason"] for f in report["files"])  # the report names the kind of series


def test_example_and_weak_secrets_are_refused(phi_export, tmp_path):
    example = (ROOT / "k8s" / "kind" / "secrets.env.example").read_text()
    documented = next(line.split("=", 1)[1] for line in example.splitlines() if line.startswith("LUMBAR_PSEUDONYM"))
    for value in (
        documented,
        "my-example-key-2024-xyz",
        "CHANGEME_please_0123456",
        "aaaaaaaaaaaaaaaaaaaaaaaa",
        "short",
    ):
        with pytest.raises(InputError, match="pseudonymisation secret in LUMBAR_PSEUDONYM_SECRET"):
            check_secret(value, "LUMBAR_PSEUDONYM_SECRET")
    check_secret(TEST_SECRET, TEST_SECRET_ENV)
    run = subprocess.run(
        [LUMBAR, "dataset", "build", "--source", phi_export, "--out", tmp_path / "o"],
        capture_output=True,
        text=True,
        env={**os.environ, "LUMBAR_PSEUDONYM_SECRET": documented},
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("error: the pseudonymisation secret") and run.stderr.count("\n") == 1
    assert documented not in run.stderr and not (tmp_path / "o").exists()


def test_compiled_dataset_builds_require_the_pseudonym_secret(tmp_path):
    import yaml

    from launch.launcher import compile_pipeline

    checked = 0
    for name in ("dataset_c", "paper", "procedure3"):
        path = compile_pipeline(name, tmp_path / f"{name}.yaml")
        platform = list(yaml.safe_load_all(path.read_text()))[1]
        for placement in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
            for secret in placement.get("secretAsEnv", []):
                if secret["secretName"] == "lumbar-pseudonym":
                    assert secret.get("optional") is False, name
                    checked += 1
    assert checked >= 3
