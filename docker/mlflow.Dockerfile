# The MLflow tracking server for k8s/: the same MLflow version the pipelines log with, plus its auth
# extra (the basic-auth app needs Flask-WTF), the PostgreSQL driver (runs and users) and boto3
# (artifacts proxied to the object store); the official MLflow image has none of them. Every package is
# pinned (docker/mlflow-constraints.txt) and installed from build/wheelhouse/ without network. The
# entrypoint (mlflow-entrypoint.py) starts `mlflow server --app-name basic-auth`, the database URI built
# from PG* environment variables.
ARG PYTHON_BASE=python:3.11.11-slim-bookworm
FROM ${PYTHON_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
COPY build/wheelhouse /wheels
COPY docker/mlflow-constraints.txt /tmp/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/mlflow-constraints.txt

FROM ${PYTHON_BASE}
LABEL org.opencontainers.image.title="lumbar-mlflow" \
      org.opencontainers.image.description="MLflow tracking server (basic-auth) with PostgreSQL and S3 support" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN groupadd --gid 10001 mlflow \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin mlflow
COPY --from=build /opt/venv /opt/venv
COPY docker/mlflow-entrypoint.py /usr/local/bin/mlflow-entrypoint.py
USER 10001:10001
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["python", "/usr/local/bin/mlflow-entrypoint.py"]
CMD ["--host", "0.0.0.0", "--port", "5000"]
