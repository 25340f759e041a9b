"""Shared fixtures: a real synthetic PACS export (DICOM written by pydicom) and a dataset built from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lumbar.dataset_c import BuildConfig, build_dataset_c
from lumbar.synth import SynthConfig, write_pacs_export

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BRAIN_MRI_SAMPLE = SHARED / "data" / "brain-mri-sample"
TEST_SECRET_ENV = "LUMBAR_TEST_PSEUDONYM_SECRET"
TEST_SECRET = "test-secret-0123456789-abcdef"


@pytest.fixture(scope="session", autouse=True)
def _test_secret() -> None:
    os.environ[TEST_SECRET_ENV] = TEST_SECRET


@pytest.fixture(scope="session")
def synthetic_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight patients written once per session (about 90 DICOM files each)."""
    out = tmp_path_factory.mktemp("export") / "pacs"
    write_pacs_export(out, SynthConfig(patients=8, seed=11, size=128, workers=2))
    return out


@pytest.fixture(scope="session")
def built_dataset(synthetic_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataset C built from :func:`synthetic_export`; its pseudonym key is written beside it as ``key.csv``."""
    base = tmp_path_factory.mktemp("datasets")
    out = base / "dataset-c"
    config = BuildConfig(
        source=synthetic_export,
        labels=synthetic_export / "labels.csv",
        out=out,
        key_secret_env=TEST_SECRET_ENV,
        workers=2,
        seed=3,
        write_key=base / "key.csv",
    )
    build_dataset_c(config)
    return out
