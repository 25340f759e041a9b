"""Dataset versions published to and fetched from a real S3 server, and the CLI paths that use them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lumbar.storage import open_store
from lumbar.versions import INDEX, fetch_dataset, file_index, publish_dataset, version_of

LUMBAR = str(Path(sys.executable).with_name("lumbar"))


def test_publish_is_content_addressed_and_immutable(built_dataset, bucket, s3_env, tmp_path):
    store_uri = f"s3://{bucket}/lake"
    first = publish_dataset(built_dataset, store_uri, "dataset-c")
    assert first.version == version_of(file_index(built_dataset))
    assert first.uri == f"{store_uri}/datasets/dataset-c/{first.version}"
    root = open_store(store_uri)
    assert json.loads(root.get_bytes("datasets/dataset-c/latest"))["version"] == first.version
    files = sum(1 for p in built_dataset.rglob("*") if p.is_file())
    assert first.uploaded == files
    again = publish_dataset(built_dataset, store_uri, "dataset-c")
    assert again.already_published and again.version == first.version and again.uploaded == 0

    changed = tmp_path / "changed"
    import shutil

    shutil.copytree(built_dataset, changed)
    (changed / "datacard.md").write_text((changed / "datacard.md").read_text() + "\nedited\n")
    second = publish_dataset(changed, store_uri, "dataset-c")
    assert second.version != first.version
    assert json.loads(root.get_bytes("datasets/dataset-c/latest"))["version"] == second.version
    # the first version is untouched
    assert (
        root.child(f"datasets/dataset-c/{first.version}").get_bytes("datacard.md")
        == (built_dataset / "datacard.md").read_bytes()
    )


def test_republish_verifies_and_repairs_a_tampered_version(built_dataset, bucket, s3_env, tmp_path):
    """An object overwritten behind our back (its recorded SHA-256 kept) and one deleted are found and repaired."""
    import io

    from lumbar.storage import SHA256_META, sha256_file

    version = publish_dataset(built_dataset, f"s3://{bucket}", "dc")
    target = open_store(version.uri)
    image = sorted(p.relative_to(built_dataset).as_posix() for p in built_dataset.glob("images/*.png"))[0]
    forged = b"not the image that was published"
    target._client.put_object(  # a tamperer who also copies the recorded checksum
        bucket,
        target._key(image),
        io.BytesIO(forged),
        len(forged),
        metadata={SHA256_META: sha256_file(built_dataset / image)},
    )
    target.delete("manifest.csv")
    run = _cli("dataset", "publish", built_dataset, "--store", f"s3://{bucket}", "--name", "dc", env=s3_env)
    assert run.returncode == 0, run.stderr
    assert "already published" in run.stdout and "2 failed their checksum" in run.stdout
    assert image in run.stdout and "manifest.csv" in run.stdout
    assert target.content_sha256(image) == sha256_file(built_dataset / image)
    assert target.get_bytes("manifest.csv") == (built_dataset / "manifest.csv").read_bytes()
    folder = fetch_dataset(version.uri, tmp_path / "cache")  # verified against the index on download
    assert (folder / image).read_bytes() == (built_dataset / image).read_bytes()
    again = publish_dataset(built_dataset, f"s3://{bucket}", "dc")
    assert again.already_published and again.repaired == () and again.verified == version.uploaded + 1


def test_fetch_downloads_once_and_verifies(built_dataset, bucket, s3_env, tmp_path):
    version = publish_dataset(built_dataset, f"s3://{bucket}", "dc")
    cache = tmp_path / "cache"
    folder = fetch_dataset(f"s3://{bucket}/datasets/dc/latest", cache)
    assert folder == cache / "datasets" / version.version
    assert (folder / "manifest.csv").read_bytes() == (built_dataset / "manifest.csv").read_bytes()
    assert (folder / INDEX).is_file()
    stamp = (folder / "manifest.csv").stat().st_mtime_ns
    assert fetch_dataset(f"s3://{bucket}/datasets/dc", cache) == folder  # cached: no second download
    assert fetch_dataset(version.uri, cache) == folder
    assert (folder / "manifest.csv").stat().st_mtime_ns == stamp
    assert fetch_dataset(built_dataset) == built_dataset  # a local folder is used as it is
    with pytest.raises(Exception, match="neither a published dataset version"):
        fetch_dataset(f"s3://{bucket}/datasets/nothing-here", cache)


def _cli(*args, env):
    return subprocess.run(
        [LUMBAR, *map(str, args)], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )


def test_cli_build_to_s3_and_publish(synthetic_export, bucket, s3_env, tmp_path):
    env = {**s3_env, "LUMBAR_PSEUDONYM_SECRET": "cli-s3-Gm7vK3wQ9xN2bT5r", "LUMBAR_DATA_DIR": str(tmp_path / "data")}
    out = _cli(
        "dataset",
        "build",
        "--source",
        synthetic_export,
        "--labels",
        synthetic_export / "labels.csv",
        "--out",
        f"s3://{bucket}/plain/dataset-c",
        "--publish",
        f"s3://{bucket}/lake",
        "--workers",
        2,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "published s3://" in out.stdout and "uploaded" in out.stdout
    plain = open_store(f"s3://{bucket}/plain/dataset-c")
    assert plain.exists("manifest.csv") and plain.exists("report.json")
    described = _cli("dataset", "describe", f"s3://{bucket}/lake/datasets/dataset-c/latest", env=env)
    assert described.returncode == 0 and "L4-L5" in described.stdout
    listed = _cli("store", "ls", f"s3://{bucket}/lake/datasets/dataset-c", env=env)
    assert "latest" in listed.stdout.split()
    # no credential anywhere in what the user sees or in the dataset
    secrets = (s3_env["AWS_ACCESS_KEY_ID"], s3_env["AWS_SECRET_ACCESS_KEY"])
    for text in (
        out.stdout,
        out.stderr,
        described.stdout,
        plain.get_bytes("manifest.csv").decode(),
        plain.get_bytes("report.json").decode(),
        plain.get_bytes("datacard.md").decode(),
    ):
        assert not any(secret in text for secret in secrets)


def test_cli_store_cp_and_errors(bucket, s3_env, tmp_path):
    src = tmp_path / "f.txt"
    src.write_text("payload")
    up = _cli("store", "cp", src, f"s3://{bucket}/dir/f.txt", env=s3_env)
    assert up.returncode == 0 and "uploaded" in up.stdout
    assert "unchanged" in _cli("store", "cp", src, f"s3://{bucket}/dir/f.txt", env=s3_env).stdout
    down = _cli("store", "cp", f"s3://{bucket}/dir/f.txt", tmp_path / "g.txt", env=s3_env)
    assert down.returncode == 0 and (tmp_path / "g.txt").read_text() == "payload"
    tree = _cli("store", "cp", f"s3://{bucket}/dir", tmp_path / "tree", env=s3_env)
    assert tree.returncode == 0 and (tmp_path / "tree" / "f.txt").is_file()
    denied = _cli(
        "store",
        "ls",
        f"s3://{bucket}",
        env={**s3_env, "AWS_SECRET_ACCESS_KEY": "wrong", "LUMBAR_S3_RETRY_SECONDS": "1"},
    )
    assert denied.returncode == 2 and denied.stderr.startswith("error: access denied for ")
    assert "Traceback" not in denied.stderr
    assert _cli("store", "mb", f"s3://{bucket}-2", env=s3_env).stdout.startswith("created")


def test_backbone_weights_from_s3(bucket, s3_env, tmp_path, monkeypatch):
    """`--weights s3://...` reads a backbone saved by lumbar from the object store (cached once)."""
    from lumbar.models import ModelConfig, build_model, save_backbone

    monkeypatch.setenv("LUMBAR_DATA_DIR", str(tmp_path / "data"))
    donor = build_model(ModelConfig("vgg16", "none", "finetune", 32, unfreeze_blocks=5))
    save_backbone(donor, "vgg16", tmp_path / "bb", {"source": "test"})
    open_store(f"s3://{bucket}/backbones/vgg16").put_tree(tmp_path / "bb")
    model = build_model(ModelConfig("vgg16", f"s3://{bucket}/backbones/vgg16", "frozen", 32))
    for a, b in zip(
        model.get_layer("block3_conv2").get_weights(), donor.get_layer("block3_conv2").get_weights(), strict=True
    ):
        assert (a == b).all()
    assert list((tmp_path / "data" / "cache" / "backbones").glob("*/backbone.npz"))


def test_a_damaged_pointer_or_cached_copy_is_refused_or_repaired(built_dataset, tmp_path, monkeypatch):
    """Issue 29 case 14: a store in a folder with a space, a damaged 'latest', an altered cached copy."""
    from tests.conftest import run_in_process

    monkeypatch.setenv("LUMBAR_DATA_DIR", str(tmp_path / "data"))
    store = tmp_path / "hospital store"
    published = run_in_process("dataset", "publish", built_dataset, "--store", store, "--name", "dc")
    assert published.returncode == 0, published.stderr
    uri = published.stdout.split(" ", 1)[0]
    assert "%20" in uri  # the URI lumbar prints ...
    assert run_in_process("dataset", "describe", uri).returncode == 0  # ... is one lumbar opens
    latest = f"{store.as_uri()}/datasets/dc/latest"
    cached = fetch_dataset(latest)
    manifest = (cached / "manifest.csv").read_bytes()
    (cached / "manifest.csv").write_bytes(manifest.replace(b"train", b"test", 1))  # an altered cached copy
    assert fetch_dataset(latest) == cached and (cached / "manifest.csv").read_bytes() == manifest  # fetched anew
    for damage in (b"{not json", b'{"version": "../../etc"}', b'{"version": "0123456789abcdef"}', b"[]"):
        (store / "datasets" / "dc" / "latest").write_bytes(damage)
        run = run_in_process("dataset", "describe", latest)
        assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
        assert "'latest' pointer" in run.stderr and "damaged" in run.stderr
    assert run_in_process("dataset", "publish", built_dataset, "--store", store, "--name", "dc").returncode == 0
    assert fetch_dataset(latest) == cached  # publishing again repaired the pointer
