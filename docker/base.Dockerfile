# The component base image: Python 3.11, lumbar with its CPU dependencies (TensorFlow CPU, kfp, MLflow,
# pydicom), for the dataset, evaluate, Grad-CAM and compare steps.
# Build from the repository root with `make images`, which first fills build/wheelhouse/ with the wheels
# of docker/constraints.txt (pip on the host, which reaches the package index): the build itself needs
# no network, no CA bundle and no BuildKit frontend, so it runs on any engine, offline included.
# PYTHON_BASE: the pinned Python slim image by default (pin it by digest for production); `make base-image`
# builds one from Debian's packages where no registry can be reached.
ARG PYTHON_BASE=python:3.11.11-slim-bookworm
FROM ${PYTHON_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
ARG TENSORFLOW_VERSION=2.21.0
WORKDIR /src
# the wheels and the pinned dependencies first, then the CPU TensorFlow: a code change rebuilds only the
# layers below; this stage's layers (the wheels among them) never reach the image
COPY build/wheelhouse /wheels
COPY docker/constraints.txt ./
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r constraints.txt "tensorflow-cpu==${TENSORFLOW_VERSION}"
COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
COPY launch ./launch
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM ${PYTHON_BASE}
LABEL org.opencontainers.image.title="lumbar" \
      org.opencontainers.image.description="lumbar Kubeflow component image (CPU)" \
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
    TF_CPP_MIN_LOG_LEVEL=2
USER 10001:10001
# a batch task: Kubernetes and Kubeflow track it by its exit code, there is no service to probe
HEALTHCHECK NONE
WORKDIR /home/lumbar
CMD ["lumbar", "--help"]
