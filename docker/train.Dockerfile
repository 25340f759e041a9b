# The CUDA training image, for the train and pretrain steps on GPU nodes: lumbar with TensorFlow and its
# CUDA and cuDNN wheels (docker/cuda-constraints.txt; several GB, built only by `make images CUDA=1`). The
# host needs only the NVIDIA driver; the device plugin sets NVIDIA_VISIBLE_DEVICES. The training image's
# CPU variant, for local runs, is base.Dockerfile's image under the training image's CPU name.
# Build from the repository root with `make images CUDA=1` (build/wheelhouse/ filled first, with the CUDA
# wheels, as for base.Dockerfile).
ARG PYTHON_BASE=python:3.11.11-slim-bookworm
FROM ${PYTHON_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
ARG TENSORFLOW_VERSION=2.21.0
WORKDIR /src
# the pinned dependencies first (docker/constraints.txt; TensorFlow is not in it), then TensorFlow with its
# CUDA wheels (docker/cuda-constraints.txt): tensorflow-cpu is never installed here, so the two builds never
# share the `tensorflow` package folder. A code change rebuilds only the layers below; this stage's layers
# (the wheels among them) never reach the image.
COPY build/wheelhouse /wheels
COPY docker/constraints.txt docker/cuda-constraints.txt ./
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r constraints.txt -r cuda-constraints.txt \
        "tensorflow[and-cuda]==${TENSORFLOW_VERSION}"
COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
COPY launch ./launch
# lumbar itself without its declared dependencies (they would pull tensorflow-cpu over the CUDA build)
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM ${PYTHON_BASE}
LABEL org.opencontainers.image.title="lumbar-train" \
      org.opencontainers.image.description="lumbar Kubeflow training image (TensorFlow with CUDA)" \
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
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
# a batch task: Kubernetes and Kubeflow track it by its exit code, there is no service to probe
HEALTHCHECK NONE
WORKDIR /home/lumbar
CMD ["lumbar", "--help"]
