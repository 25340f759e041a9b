"""Keras' ImageNet weight files for air-gapped clusters: import them into an object store, fetch them back.

A cluster without internet cannot let Keras download ImageNet weights. ``lumbar weights import DIR --to
URI`` puts the weight files of the four backbones into an object store, each checked against the md5
that Keras itself verifies downloads with (read from Keras' own source, ``keras/src/applications``);
training tasks then fetch the file they need into ``$KERAS_HOME/models`` before they build a model
(:func:`fetch_imagenet_weights`, called by ``lumbar.models``), from ``LUMBAR_WEIGHTS_URI``.

Keras publishes no hash for MobileNetV2's files: those are imported by name and recorded by their
SHA-256 (the object store verifies every download against it), and reported as unverified.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lumbar.backbones import BACKBONES
from lumbar.errors import InputError, LumbarError

#: The environment variable naming where imported weights live (``k8s`` sets it in the config map).
WEIGHTS_URI_ENV = "LUMBAR_WEIGHTS_URI"


class WeightsImportError(LumbarError):
    """A weight file that must not be imported (wrong content for its name)."""


def weight_file_names() -> tuple[str, ...]:
    """The file names (no top) of the registered backbones' ImageNet weights, as Keras names them."""
    return tuple(name for spec in BACKBONES.values() for name in spec.imagenet_files)


def _applications_dir() -> Path:
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        raise LumbarError("keras is not installed: its md5 table of ImageNet weights cannot be read")
    return Path(next(iter(spec.submodule_search_locations))) / "src" / "applications"


@lru_cache(maxsize=1)
def keras_md5_table() -> dict[str, str | None]:
    """The md5 Keras checks each of :func:`weight_file_names` against (``None``: Keras publishes none).

    Read from Keras' source without importing it (no TensorFlow start-up): the ``file_hash`` of each
    ``get_file("<name>", ..., file_hash=...)`` call in ``vgg16.py``/``vgg19.py`` and ResNet50's entry of
    ``WEIGHTS_HASHES`` in ``resnet.py``.

    Raises:
        LumbarError: If the installed Keras no longer has the hash of a VGG or ResNet file.
    """
    folder = _applications_dir()
    found: dict[str, str] = {}
    for module in ("vgg16.py", "vgg19.py"):
        for node in ast.walk(ast.parse((folder / module).read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get_file" and node.args):
                continue
            name = node.args[0]
            hashes = [k.value for k in node.keywords if k.arg == "file_hash"]
            if isinstance(name, ast.Constant) and hashes and isinstance(hashes[0], ast.Constant):
                found[str(name.value)] = str(hashes[0].value)
    for node in ast.walk(ast.parse((folder / "resnet.py").read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "WEIGHTS_HASHES" for t in node.targets):
            table = ast.literal_eval(node.value)
            found["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"] = table["resnet50"][1]
    result: dict[str, str | None] = {}
    for name in weight_file_names():
        if name.startswith("mobilenet_v2"):
            result[name] = None
        elif name in found:
            result[name] = found[name]
        else:
            raise LumbarError(f"the installed Keras has no md5 for {name} (looked in {folder})")
    return result


def file_digest(path: str | Path, algorithm: str) -> str:
    """The hex digest of a file (``md5`` or ``sha256``), read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weight_file(path: str | Path, expected: str | None) -> bool:
    """Check a weight file against the hash Keras publishes for it, as Keras' own ``get_file`` does.

    Args:
        path: The file.
        expected: Keras' hash (md5, or sha256 when 64 hex digits); ``None`` when Keras publishes none.

    Returns:
        True when the file was verified, False when there was nothing to verify against.

    Raises:
        WeightsImportError: If the file's digest differs from ``expected``.
    """
    if expected is None:
        return False
    algorithm = "sha256" if len(expected) == 64 else "md5"
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        raise WeightsImportError(
            f"{path} is not Keras' {Path(path).name}: its {algorithm} is {actual}, Keras expects {expected} "
            "(a truncated or different download)"
        )
    return True


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_weights` did, by file name."""

    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def import_weights(folder: str | Path, to: str) -> ImportResult:
    """Put the ImageNet weight files found in ``folder`` into the store at ``to``, each checked first.

    Every known file is checked before anything is uploaded, so a bad file leaves the store as it was.
    Files of other names are skipped (reported in the result).

    Raises:
        InputError: If ``folder`` is not a folder or holds none of :func:`weight_file_names`.
        WeightsImportError: If a file does not match Keras' hash for its name.
        StoreError: If the store cannot be written.
    """
    from lumbar.storage import open_store

    source = Path(folder)
    if not source.is_dir():
        raise InputError(f"{source} is not a folder")
    table = keras_md5_table()
    known = sorted(p for p in source.iterdir() if p.is_file() and p.name in table)
    skipped = sorted(p.name for p in source.iterdir() if p.name not in table)
    if not known:
        raise InputError(
            f"{source} holds none of Keras' ImageNet weight files lumbar uses ({', '.join(weight_file_names())})"
        )
    unverified = [p.name for p in known if not check_weight_file(p, table[p.name])]
    store = open_store(to)
    result = ImportResult(unverified=unverified, skipped=skipped)
    for path in known:
        (result.uploaded if store.put_file(path, path.name) else result.unchanged).append(path.name)
    return result


def weights_uri(environ: Mapping[str, str] | None = None) -> str | None:
    """Where imported weights live (``LUMBAR_WEIGHTS_URI``), or None when not set."""
    env = os.environ if environ is None else environ
    return env.get(WEIGHTS_URI_ENV, "").strip() or None


def fetch_imagenet_weights(name: str, target_dir: str | Path, uri: str) -> Path | None:
    """Download one imported weight file into ``target_dir`` (Keras' cache) and check it again.

    Returns:
        The file, or None when the store does not hold it.

    Raises:
        WeightsImportError: If the downloaded file does not match Keras' hash (it is removed).
        StoreError: If the store cannot be read (access denied, unreachable).
    """
    from lumbar.storage import open_store

    store = open_store(uri)
    if not store.exists(name):
        return None
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    path = store.get_file(name, target / name)
    try:
        check_weight_file(path, keras_md5_table().get(name))
    except WeightsImportError:
        path.unlink(missing_ok=True)
        raise
    return path


def import_command_hint(uri: str | None = None) -> str:
    """The command that imports the weights, for error messages."""
    return f"lumbar weights import DIR --to {uri or 's3://lumbar/keras-weights'}"
