"""The container images every component runs in: one place, tags derived from the package version.

``make images`` builds the images under exactly these tags (it reads them from ``python -m
components.images --shell``), and ``k8s/base`` deploys the MLflow image under the same tag; tests
check that they agree.
"""

from lumbar import __version__

REGISTRY = "ghcr.io/lumbar-mlops"
PYTHON = "python3.11"
#: CPU image (docker/base.Dockerfile): Python 3.11 slim, lumbar with its CPU dependencies, kfp.
BASE_IMAGE = f"{REGISTRY}/lumbar:{__version__}-{PYTHON}"
#: GPU image (docker/train.Dockerfile): TensorFlow with CUDA, lumbar[gpu] (training and pretraining).
TRAIN_IMAGE = f"{REGISTRY}/lumbar-train:{__version__}-{PYTHON}-cuda"
#: MLflow tracking server (docker/mlflow.Dockerfile) that k8s/base deploys.
MLFLOW_IMAGE = f"{REGISTRY}/lumbar-mlflow:{__version__}"
#: Dockerfile of each image.
DOCKERFILES = {
    BASE_IMAGE: "docker/base.Dockerfile",
    TRAIN_IMAGE: "docker/train.Dockerfile",
    MLFLOW_IMAGE: "docker/mlflow.Dockerfile",
}


def main() -> None:
    """Print the tags, as ``NAME=tag`` lines for the shell with ``--shell``."""
    import sys

    names = {"BASE_IMAGE": BASE_IMAGE, "TRAIN_IMAGE": TRAIN_IMAGE, "MLFLOW_IMAGE": MLFLOW_IMAGE}
    for name, tag in names.items():
        print(f"{name}={tag}" if "--shell" in sys.argv[1:] else f"{tag}  ({DOCKERFILES[tag]})")


if __name__ == "__main__":
    main()
