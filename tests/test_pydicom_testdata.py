"""Real DICOM that nobody here wrote: the MR files shipped inside the pydicom wheel."""

import json
import shutil

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from lumbar.dataset_c import BuildConfig, build_dataset_c
from lumbar.deid import Pseudonymizer
from lumbar.dicom import decode_frame, read_header

from .conftest import TEST_SECRET, TEST_SECRET_ENV

NAMES = [
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_padded.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_truncated.dcm",
]


@pytest.fixture(scope="module")
def pydicom_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pydicom-data")
    for name in NAMES:
        path = get_testdata_file(name, download=False)  # never download: these ship in the wheel
        assert path is not None, f"{name} is not in the installed pydicom wheel"
        shutil.copy(path, folder / name)
    return folder


def test_each_file_is_decoded_or_quarantined(pydicom_files):
    reference = None
    for name in NAMES:
        result = read_header(pydicom_files, name)
        if name == "MR_truncated.dcm":
            assert result.status == "indexed" and result.frames[0].problem.startswith("truncated")
            with pytest.raises(ValueError, match="truncated"):
                decode_frame(pydicom_files, result.frames[0])
            continue
        assert result.status == "indexed", (name, result.reason)
        assert len(result.frames) == 1 and result.frames[0].problem == ""
        image = decode_frame(pydicom_files, result.frames[0])
        assert image.shape == (64, 64) and image.dtype == np.uint8
        if reference is None:
            reference = image
        else:  # every encoding of the same image decodes to the same pixels
            np.testing.assert_array_equal(image, reference, err_msg=name)


def test_jpeg_ls_decodes_with_the_installed_decoders(pydicom_files):
    result = read_header(pydicom_files, "MR_small_jpeg_ls_lossless.dcm")
    image = decode_frame(pydicom_files, result.frames[0])
    assert image.std() > 10


def test_build_accounts_for_them(pydicom_files, tmp_path):
    out = tmp_path / "ds"
    result = build_dataset_c(BuildConfig(source=pydicom_files, out=out, key_secret_env=TEST_SECRET_ENV))
    report = json.loads((out / "report.json").read_text())
    assert len(report["files"]) == len(NAMES)
    assert result.images == 0  # one MR slice, exported nine times: no lumbar series to select from
    pseudonymizer = Pseudonymizer(TEST_SECRET.encode())
    by_token = {f["file"]: f for f in report["files"]}  # the report names files by keyed token, never by path
    files = {name: by_token[pseudonymizer.file_token(name)] for name in NAMES}
    assert all(f["reason"] for f in files.values())
    duplicates = [f for f in files.values() if "duplicate" in f["reason"]]
    assert len(duplicates) == len(NAMES) - 1
    kept = {f["file"] for f in files.values()} - {f["file"] for f in duplicates}
    assert all(f["same_image_as"] in kept for f in duplicates)  # each duplicate points at the one file kept
    assert files["MR_truncated.dcm"]["status"] == "quarantined"
    assert files["MR_truncated.dcm"]["reason"].startswith("truncated")
    missing = {m["item"]: m["reason"] for m in report["patients"][0]["missing"]}
    assert "has 1 frames" in missing["12"] and "no sagittal T2 series" in missing["3"]
