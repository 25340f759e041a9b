# syntax=docker/dockerfile:1
# The training image: lumbar with the `gpu` extra (TensorFlow with its CUDA and cuDNN wheels), for the
# train and pretrain steps on GPU nodes. The host needs only the NVIDIA driver (NVIDIA container toolkit).
# Build from the repository root: make images (or docker build -f docker/train.Dockerfile .).
# The base is pinned by version; for production pin it by digest too (python:3.11.11-slim-bookworm@sha256:...).
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
ARG TENSORFLOW_VERSION=2.21.0
WORKDIR /src
# the pinned dependencies first (docker/constraints.txt, `make constraints`; TensorFlow is not in it),
# then the GPU TensorFlow with its CUDA wheels directly: tensorflow-cpu is never installed here, so the
# two builds never share the `tensorflow` package folder. A code change rebuilds only the layers below.
COPY docker/constraints.txt ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r constraints.txt "tensorflow[and-cuda]==${TENSORFLOW_VERSION}"
COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
COPY launch ./launch
# lumbar itself without its declared dependencies (they would pull tensorflow-cpu over the GPU build)
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="lumbar-train" \
      org.opencontainers.image.description="lumbar Kubeflow training image (TensorFlow GPU, CUDA)" \
      org.opencontainers.image.source="https://github.com/lumbar-mlops/lumbar" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 lumbar \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin lumbar
COPY --from=build /opt/venv /opt/venv
# ImageNet weights for air-gapped clusters: files placed in docker/keras-weights/ land where Keras looks
COPY --chown=10001:10001 docker/keras-weights/ /opt/keras/models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KERAS_HOME=/opt/keras \
    LUMBAR_DATA_DIR=/tmp/lumbar \
    TF_CPP_MIN_LOG_LEVEL=2 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
# a batch task: Kubernetes and Kubeflow track it by its exit code, there is no service to probe
HEALTHCHECK NONE
WORKDIR /home/lumbar
CMD ["lumbar", "--help"]
