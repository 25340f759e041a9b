# PostgreSQL for MLflow's runs and users (k8s/base/postgres.yaml): Debian bookworm's PostgreSQL 15, which
# Debian keeps patched, since no registry image can be pulled where the images are built and tested.
# docker/postgres-entrypoint.sh follows the official image's contract (POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, PGDATA), so the manifests read the same with either. apt reaches Debian's mirror through
# the host's network (`make images` builds with --network host); no Python package is installed.
ARG PYTHON_BASE=python:3.11.11-slim-bookworm
FROM ${PYTHON_BASE}
LABEL org.opencontainers.image.title="lumbar-postgres" \
      org.opencontainers.image.description="PostgreSQL 15 (Debian bookworm) for lumbar's MLflow server" \
      org.opencontainers.image.licenses="PostgreSQL"
ARG POSTGRES_MAJOR=15
# the user exists before the package, so the package uses uid 10001 (the manifests' runAsUser); no
# cluster is created at install time: the entrypoint initialises PGDATA on first start. The Debian
# version is not pinned: Debian's mirror keeps only the current (patched) one, so a pin would break the
# build at Debian's next security update; the installed versions are in the image's SBOM (dpkg list).
# ssl-cert (a dependency) makes a "snakeoil" private key at install time: removed in the same layer, so
# no layer holds it (the server runs without TLS inside the cluster network; tests/images checks layers).
# hadolint ignore=DL3008
RUN groupadd --gid 10001 postgres \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/postgresql --no-create-home --shell /bin/sh postgres \
    && mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
    && apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "postgresql-${POSTGRES_MAJOR}" \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R 10001:10001 /var/lib/postgresql /var/run/postgresql \
    && chmod 0700 /var/lib/postgresql/data
COPY docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/${POSTGRES_MAJOR}/bin:$PATH \
    PGDATA=/var/lib/postgresql/data/pgdata \
    LANG=C.UTF-8
USER 10001:10001
EXPOSE 5432
HEALTHCHECK --interval=10s --timeout=5s CMD ["pg_isready", "-q"]
ENTRYPOINT ["/bin/sh", "/usr/local/bin/postgres-entrypoint.sh"]
