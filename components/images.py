"""The container images every component runs in: one place, tags derived from the package version.

``docker/`` builds both images with the same tags (``make images``); a test checks they agree.
The registry can be changed at compile time with ``lumbar pipeline compile --registry``.
"""

from lumbar import __version__

REGISTRY = "ghcr.io/lumbar-mlops"
PYTHON = "python3.11"
#: CPU image: Python 3.11 slim, lumbar with its CPU dependencies, kfp (dataset, evaluate, compare steps).
BASE_IMAGE = f"{REGISTRY}/lumbar:{__version__}-{PYTHON}"
#: GPU image: TensorFlow with CUDA, lumbar[gpu] (training and pretraining steps).
TRAIN_IMAGE = f"{REGISTRY}/lumbar-train:{__version__}-{PYTHON}-cuda"
