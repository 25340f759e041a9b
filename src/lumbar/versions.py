"""Immutable, content-addressed dataset versions in a store, with a ``latest`` pointer.

A dataset folder is published to ``<store>/datasets/<name>/<version>/``, where ``version`` is the
first 16 hex digits of the SHA-256 of its file index (``SHA256SUMS``: one ``<sha256>  <path>`` line
per file, sorted by path, covering ``manifest.csv`` and every image). The index is uploaded with the
files and a ``_COMPLETE`` marker last. Publishing a version that is already complete changes nothing
that is intact: every object is read back and hashed, and only those whose bytes no longer match the
local folder (tampered with, damaged, deleted) are uploaded again. After a successful publish
``<store>/datasets/<name>/latest`` names the version.

Consumers fetch a version (or ``latest``) into a local cache keyed by the version hash, downloading
it once and verifying every file against the index; a cached copy is verified again each time it is
served, and fetched anew when a file was altered. A ``latest`` pointer that names no complete version
is refused with one line (``publish`` writes it anew).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lumbar.errors import InputError
from lumbar.paths import data_dir
from lumbar.storage import Store, StoreError, is_remote, open_store, sha256_file

INDEX = "SHA256SUMS"
_VERSION = re.compile(r"[0-9a-f]{16}")
COMPLETE = "_COMPLETE"
LATEST = "latest"


@dataclass(frozen=True)
class DatasetVersion:
    """A published dataset version."""

    name: str
    version: str
    uri: str
    uploaded: int = 0
    skipped: int = 0
    already_published: bool = False
    verified: int = 0
    repaired: tuple[str, ...] = ()


def file_index(folder: str | Path) -> str:
    """Return the ``SHA256SUMS`` text of a dataset folder (the index file itself excluded)."""
    root = Path(folder)
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative in (INDEX, COMPLETE):
            continue
        lines.append(f"{sha256_file(path)}  {relative}")
    return "\n".join(lines) + "\n"


def version_of(index_text: str) -> str:
    """The version id of an index: 16 hex digits of its SHA-256."""
    return hashlib.sha256(index_text.encode("utf-8")).hexdigest()[:16]


def publish_dataset(
    folder: str | Path,
    store_uri: str,
    name: str = "dataset-c",
    create_bucket: bool = False,
    progress: Callable[[int], None] | None = None,
) -> DatasetVersion:
    """Publish a dataset folder as an immutable version and move ``latest`` to it.

    Args:
        folder: The dataset folder (with ``manifest.csv``).
        store_uri: The store root (``s3://bucket/prefix``, ``file:///path`` or a folder).
        name: Dataset name.
        create_bucket: Create a missing S3 bucket.
        progress: Called with 1 per file.

    Returns:
        The published version; when it was there complete (``already_published``), ``verified``
        objects were read back and hashed and ``repaired`` lists those uploaded again.
    """
    folder = Path(folder)
    if not (folder / "manifest.csv").is_file():
        raise InputError(f"{folder} is not a lumbar dataset (no manifest.csv)")
    if not name or "/" in name:
        raise InputError(f"dataset name must be a non-empty word without '/', got {name!r}")
    index = file_index(folder)
    version = version_of(index)
    root = open_store(store_uri, create_bucket=create_bucket)
    target = root.child(f"datasets/{name}/{version}")
    if target.exists(COMPLETE):
        repaired = _verify_and_repair(target, folder, index, progress)
        _set_latest(root, name, version)
        return DatasetVersion(
            name,
            version,
            target.uri,
            uploaded=len(repaired),
            already_published=True,
            verified=index.count("\n") + 1,
            repaired=tuple(repaired),
        )
    result = target.put_tree(folder, progress=progress)
    target.put_bytes(index.encode("utf-8"), INDEX)
    marker = {
        "version": version,
        "published": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": index.count("\n"),
    }
    target.put_bytes(json.dumps(marker).encode("utf-8"), COMPLETE)
    _set_latest(root, name, version)
    return DatasetVersion(name, version, target.uri, result.transferred, result.skipped)


def _verify_and_repair(
    target: Store, folder: Path, index: str, progress: Callable[[int], None] | None = None
) -> list[str]:
    """Hash every object of a published version as stored now; upload again each one that differs from ``folder``.

    Returns:
        The keys uploaded again (the index among them when it was damaged).
    """
    repaired = []
    expected = [line.split("  ", 1) for line in index.splitlines() if line]
    for digest, relative in expected:
        if target.content_sha256(relative) != digest:
            target.put_file(folder / relative, relative, force=True)
            repaired.append(relative)
        if progress:
            progress(1)
    if target.content_sha256(INDEX) != hashlib.sha256(index.encode("utf-8")).hexdigest():
        target.put_bytes(index.encode("utf-8"), INDEX)
        repaired.append(INDEX)
    return repaired


def _set_latest(root: Store, name: str, version: str) -> None:
    root.put_bytes(json.dumps({"version": version}).encode("utf-8"), f"datasets/{name}/{LATEST}")


def resolve(uri: str) -> tuple[Store, str]:
    """Resolve ``.../datasets/<name>[/latest|/<version>]`` to the version's store and its version id."""
    text = uri.rstrip("/")
    store = open_store(text)
    if store.exists(COMPLETE):
        return store, text.rsplit("/", 1)[-1]
    if text.endswith(f"/{LATEST}"):
        text = text[: -len(LATEST) - 1]
    pointer = open_store(text)
    if not pointer.exists(LATEST):
        raise StoreError(f"{uri} is neither a published dataset version nor a dataset with a 'latest' pointer")
    version = _pointed_version(pointer.get_bytes(LATEST))
    if version is None or not pointer.child(version).exists(COMPLETE):
        raise StoreError(
            f"the 'latest' pointer of {text} is damaged (it names no complete version); publish the dataset again "
            "to repair it, or name a version"
        )
    return pointer.child(version), version


def _pointed_version(data: bytes) -> str | None:
    """The version a ``latest`` pointer names, or None when it is not ``{"version": "<16 hex digits>"}``."""
    try:
        version = json.loads(data.decode("utf-8"))["version"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, str) and _VERSION.fullmatch(version) else None


def fetch_dataset(
    uri: str | Path,
    cache: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Return a local folder holding the dataset at ``uri``.

    A local folder is returned as it is. A published version (``s3://.../datasets/<name>/<version>``,
    ``.../<name>/latest`` or ``.../<name>``) is downloaded once into ``<cache>/datasets/<version>``
    (default cache: ``<data dir>/cache``) and verified against its index.
    """
    text = str(uri)
    if not is_remote(text) and not text.startswith("file://"):
        folder = Path(text)
        if not (folder / "manifest.csv").is_file():
            raise InputError(f"{folder} is not a lumbar dataset (no manifest.csv)")
        return folder
    store, version = resolve(text)
    target = Path(cache or data_dir() / "cache") / "datasets" / version
    if (target / COMPLETE).is_file():
        if _intact(target, version):
            return target
        shutil.rmtree(target, ignore_errors=True)  # an altered copy is never served: it is fetched again
    partial = target.with_name(f".{version}.partial")
    store.get_tree("", partial, progress=progress)
    if not _intact(partial, version):
        shutil.rmtree(partial, ignore_errors=True)
        raise StoreError(f"dataset version {version} from {text} does not match its index; it was not cached")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _intact(folder: Path, version: str) -> bool:
    """Whether a cached version still holds exactly the files its index lists, with their hashes."""
    try:
        index = (folder / INDEX).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return version_of(index) == version and file_index(folder) == index


def pin(uri: str) -> tuple[str, str]:
    """The immutable form of a dataset reference: ``(uri of the version, version id)``.

    ``.../datasets/<name>/latest`` (or ``.../<name>``) becomes ``.../datasets/<name>/<version>``; a local
    folder keeps its path, with the version computed from its content. A pipeline's cached steps take
    these, never the pointer (Kubeflow's cache key is the inputs' values: ``latest`` would hit forever).

    Raises:
        InputError: For a local folder that is not a dataset.
        StoreError: When the pointer or version does not exist.
    """
    text = str(uri)
    if not is_remote(text) and not text.startswith("file://"):
        folder = Path(text)
        if not (folder / "manifest.csv").is_file():
            raise InputError(f"{folder} is not a lumbar dataset (no manifest.csv)")
        return str(folder), version_of(file_index(folder))
    store, version = resolve(text)
    return store.uri, version
