"""The installed `lumbar` command, run as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_in_process

LUMBAR = str(Path(sys.executable).with_name("lumbar"))


def run(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([LUMBAR, *map(str, args)], capture_output=True, text=True, env=full_env, timeout=300)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "export"
    result = run("synth", "pacs", out, "--patients", 3, "--seed", 4, "--size", 64)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 patients" in result.stdout
    return out


def test_build_and_describe(export, tmp_path):
    out = tmp_path / "ds"
    result = run(
        "dataset",
        "build",
        "--source",
        export,
        "--labels",
        export / "labels.csv",
        "--out",
        out,
        "--workers",
        2,
        env={"LUMBAR_PSEUDONYM_SECRET": "cli-Hw3kQ9vZ2mXp7Lr5"},
    )
    assert result.returncode == 0, result.stderr
    assert "3 patients" in result.stdout and "report.json" in result.stdout
    assert "random for this build" not in result.stderr
    described = run("dataset", "describe", out)
    assert described.returncode == 0
    for text in ("L1-L2", "L5-S1", "0 normal", "3 herniation", "train", "Abnormal"):
        assert text in described.stdout
    assert "images of 3 patients" in described.stdout


def test_build_with_a_small_train_share(export, tmp_path):
    """--fractions sets the split shares: one patient of three for training, as a few-label probe needs."""
    import csv

    out = tmp_path / "few"
    result = run(
        "dataset", "build", "--source", export, "--labels", export / "labels.csv", "--out", out,
        "--fractions", "0.34,0.33,0.33",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with (out / "manifest.csv").open() as handle:
        splits = {}
        for row in csv.DictReader(handle):
            splits.setdefault(row["split"], set()).add(row["patient"])
    assert {name: len(patients) for name, patients in splits.items()} == {"train": 1, "val": 1, "test": 1}


def test_clear_errors_without_traceback(export, tmp_path):
    cases = [
        (("dataset", "build", "--source", tmp_path / "nope", "--out", tmp_path / "o"), "does not exist"),
        (
            ("dataset", "build", "--source", export, "--out", tmp_path / "o", "--key-secret-env", "LUMBAR_UNSET_VAR_X"),
            "LUMBAR_UNSET_VAR_X",
        ),
        (
            ("dataset", "build", "--source", export, "--out", tmp_path / "o", "--labels", tmp_path / "none.csv"),
            "labels file",
        ),
        (("dataset", "describe", tmp_path), "not a lumbar dataset"),
        (("synth", "pacs", tmp_path / "s", "--compression", "zip"), "compression"),
        (("synth", "pacs", tmp_path / "s", "--patients", 0), "patients must be at least 1"),  # SynthConfig's message
        # the CLI does not re-validate: the demo's config refuses what it cannot run, in its own words
        (("demo", "--out", tmp_path / "demo", "--patients", 1), "the demo needs at least 6 patients"),
        (("pipeline", "compile", "procedure1", "-o", tmp_path / "p.yaml", "--gpus", 0), "--gpus"),  # ClusterSettings'
        (("dataset", "build", "--source", export, "--out", tmp_path / "o", "--fractions", "0.5,0.5"), "--fractions"),
        (("dataset", "build", "--source", export, "--out", tmp_path / "o", "--fractions", "0.5,x,0.1"), "--fractions"),
        (("dataset", "build", "--source", export, "--out", tmp_path / "o", "--fractions", "0.5,0.6,0.1"), "sum"),
        (
            ("train", "--dataset", tmp_path / "ds", "--out", tmp_path / "m", "--mode", "finetune", "--unfreeze", "x:2"),
            "--unfreeze must be blocks:N or layers:N",
        ),
        (("train", "--dataset", tmp_path / "ds", "--out", tmp_path / "m", "--monitor", "val_acc"), "unknown monitor"),
        (
            ("train", "--dataset", tmp_path / "ds", "--out", tmp_path / "m", "--class-weights", "inverse"),
            "unknown class weights",
        ),
    ]
    # two cases through the installed command (the process's exit status and stderr, TensorFlow's start-up
    # included); the others in this process through the same command tree (a subprocess each took 3.5 s)
    real = {0, len(cases) - 1}
    for i, (args, needle) in enumerate(cases):
        result = run(*args) if i in real else run_in_process(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr


def test_exit_codes_for_unusable_and_strict(export, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.bin").write_bytes(b"x")
    result = run("dataset", "build", "--source", junk, "--labels", export / "labels.csv", "--out", tmp_path / "o1")
    assert result.returncode == 1 and "nothing usable" in result.stderr
    bad_labels = tmp_path / "labels.csv"
    bad_labels.write_text((export / "labels.csv").read_text() + "P000001,L99,0,0,0,0,0\n")
    lenient = run("dataset", "build", "--source", export, "--labels", bad_labels, "--out", tmp_path / "o2")
    assert lenient.returncode == 0
    strict = run("dataset", "build", "--source", export, "--labels", bad_labels, "--out", tmp_path / "o3", "--strict")
    assert strict.returncode == 1 and "--strict" in strict.stderr


def test_help_lists_subcommands():
    result = run("--help")
    assert result.returncode == 0 and "synth" in result.stdout and "dataset" in result.stdout
    assert "build" in run("dataset", "--help").stdout
