"""Entrypoint of the MLflow image: ``mlflow server --app-name basic-auth`` with secrets from the environment.

The backend store URI is assembled here from libpq's variables (PGHOST, PGPORT, PGDATABASE, PGUSER,
PGPASSWORD; user and password URL-quoted, so any character works) and handed to MLflow in
``MLFLOW_BACKEND_STORE_URI``: the password never appears on a command line (``ps``). The basic-auth
app keeps its users in the same database (its own tables and migration table); its config file is
written to a private temporary folder (mode 0600). The first admin comes from
``MLFLOW_AUTH_ADMIN_USERNAME``/``MLFLOW_AUTH_ADMIN_PASSWORD`` (at least 12 characters) and the CSRF key
from ``MLFLOW_FLASK_SERVER_SECRET_KEY`` (MLflow reads them itself). Arguments are
passed on to ``mlflow server``.
"""

import os
import sys
import tempfile
from urllib.parse import quote


def backend_uri(env: dict[str, str]) -> str:
    """The PostgreSQL URI from libpq's variables; user, password and database URL-quoted.

    The driver is named (``+psycopg2``, the one the image installs): SQLAlchemy 2.1 defaults a bare
    ``postgresql://`` to psycopg 3, which the image does not have.
    """
    missing = [k for k in ("PGUSER", "PGPASSWORD") if not env.get(k)]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not set (they come from the Secret lumbar-postgres)")
    return "postgresql+psycopg2://{}:{}@{}:{}/{}".format(
        quote(env["PGUSER"], safe=""),
        quote(env["PGPASSWORD"], safe=""),
        env.get("PGHOST", "postgres"),
        env.get("PGPORT", "5432"),
        quote(env.get("PGDATABASE", "mlflow"), safe=""),
    )


def write_auth_config(uri: str, folder: str | None = None) -> str:
    """Write basic-auth's config (users in the database at ``uri``) to a new 0600 file; return its path."""
    folder = tempfile.mkdtemp(prefix="mlflow-auth-", dir=folder)
    path = os.path.join(folder, "basic_auth.ini")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        # configparser interpolates '%': the quoted URI's escapes are doubled
        handle.write(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {uri.replace('%', '%%')}\n"
            "admin_username = admin\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
    return path


def main() -> None:
    """Start MLflow's basic-auth server with the URI and auth config in its environment."""
    env = dict(os.environ)
    auth = ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
    missing = [k for k in auth if not env.get(k)]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not set (they come from the Secret lumbar-mlflow-auth)")
    uri = backend_uri(env)
    os.environ["MLFLOW_BACKEND_STORE_URI"] = uri
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = write_auth_config(uri)
    os.execvp("mlflow", ["mlflow", "server", "--app-name", "basic-auth", *sys.argv[1:]])


if __name__ == "__main__":
    main()
