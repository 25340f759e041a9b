# syntax=docker/dockerfile:1
# The MLflow tracking server for k8s/: the same MLflow version the pipelines log with, plus its auth
# extra (the basic-auth app needs Flask-WTF), the PostgreSQL driver (runs and users) and boto3
# (artifacts proxied to the object store); the official MLflow image has none of them. The entrypoint
# (mlflow-entrypoint.py) starts `mlflow server --app-name basic-auth`, the database URI built from PG*
# environment variables.
FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="lumbar-mlflow" \
      org.opencontainers.image.description="MLflow tracking server (basic-auth) with PostgreSQL and S3 support" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir "mlflow[auth]==3.17.2" "psycopg2-binary==2.9.13" "boto3==1.44.8" \
    && groupadd --gid 10001 mlflow \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin mlflow
COPY docker/mlflow-entrypoint.py /usr/local/bin/mlflow-entrypoint.py
USER 10001:10001
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["python", "/usr/local/bin/mlflow-entrypoint.py"]
CMD ["--host", "0.0.0.0", "--port", "5000"]
