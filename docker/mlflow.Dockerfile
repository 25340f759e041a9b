# syntax=docker/dockerfile:1
# The MLflow tracking server for k8s/: the same MLflow version the pipelines log with, plus the
# PostgreSQL driver (backend store) and boto3 (artifacts proxied to the object store). The official
# MLflow image has neither.
FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="lumbar-mlflow" \
      org.opencontainers.image.description="MLflow tracking server with PostgreSQL and S3 support" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir "mlflow==3.17.2" "psycopg2-binary==2.9.13" "boto3==1.44.8" \
    && groupadd --gid 10001 mlflow \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin mlflow
USER 10001:10001
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
