"""The Kubeflow Pipelines backend the pipelines run on: its minimum version and how to reach it.

The compiled pipelines need a KFP backend of at least :data:`MIN_KFP_VERSION` (fan-in of
``dsl.Collected`` outputs of a ``ParallelFor``, and the ``optional`` field of secret and config map
mounts, which older drivers reject). The API server reports its version at ``/apis/v2beta1/healthz``
(``{"commit_sha": ..., "tag_name": "2.14.0", "multi_user": ..., "pipeline_store": ...}``); a
submission reads it first and refuses an older backend.

Credentials, in the order they are used (the ones ``kfp.Client`` supports):

1. a bearer token in ``$LUMBAR_KFP_TOKEN`` (e.g. ``kubectl create token``, or a Dex/OIDC token);
2. a ServiceAccount token file: ``$KF_PIPELINES_SA_TOKEN_PATH``, or the projected token
   ``/var/run/secrets/kubeflow/pipelines/token`` when it exists (inside a Kubeflow notebook or pod);
3. none: a port-forwarded standalone backend (``kubectl port-forward`` uses the kubeconfig).

No kfp import here (the library never imports kfp); the submission itself is in ``launch/launcher.py``.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lumbar.errors import LumbarError

#: The oldest Kubeflow Pipelines backend the compiled pipelines run on.
MIN_KFP_VERSION = "2.14.0"
#: Path of the API server's health endpoint (answers with its version).
HEALTHZ_PATH = "/apis/v2beta1/healthz"
#: Environment variable holding a bearer token for the KFP API (multi-user Kubeflow).
TOKEN_ENV = "LUMBAR_KFP_TOKEN"
#: kfp's own variable naming a ServiceAccount token file (``kfp.client.KF_PIPELINES_SA_TOKEN_ENV``).
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
#: Where Kubeflow projects the pipelines ServiceAccount token into pods (``kfp.client.KF_PIPELINES_SA_TOKEN_PATH``).
SA_TOKEN_DEFAULT_PATH = "/var/run/secrets/kubeflow/pipelines/token"


class BackendError(LumbarError):
    """The Kubeflow Pipelines backend cannot be reached, refuses us, or is too old."""


@dataclass(frozen=True)
class BackendInfo:
    """What the API server's health endpoint says about it."""

    url: str
    tag: str
    commit: str = "unknown"
    multi_user: bool = False


@dataclass(frozen=True)
class Credentials:
    """A bearer token for the API and where it came from (``env``, ``file:<path>`` or ``none``)."""

    token: str | None
    source: str
    path: str | None = None

    def __repr__(self) -> str:  # never print the token
        return f"Credentials(source={self.source!r})"


def parse_version(tag: str) -> tuple[int, int, int] | None:
    """``"2.14.0"``, ``"v2.14.3-rc.1"`` -> ``(2, 14, 0)``; None for ``unknown`` or an unparsable tag."""
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", tag.strip())
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def credentials(environ: Mapping[str, str] | None = None) -> Credentials:
    """The API credentials found in the environment (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    if env.get(TOKEN_ENV, "").strip():
        return Credentials(env[TOKEN_ENV].strip(), "env")
    path = env.get(SA_TOKEN_PATH_ENV) or (SA_TOKEN_DEFAULT_PATH if Path(SA_TOKEN_DEFAULT_PATH).is_file() else "")
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise BackendError(f"cannot read the ServiceAccount token {path} (${SA_TOKEN_PATH_ENV}): {exc}") from None
        return Credentials(token, f"file:{path}", path)
    return Credentials(None, "none")


def healthz(url: str, token: str | None = None, timeout: float = 10.0) -> BackendInfo:
    """Ask the API server at ``url`` for its version.

    Raises:
        BackendError: When it cannot be reached, refuses the request, or does not answer like a KFP API server.
    """
    url = url.rstrip("/")
    request = urllib.request.Request(f"{url}{HEALTHZ_PATH}", headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read(65536)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            hint = f"check the credentials (${TOKEN_ENV} or ${SA_TOKEN_PATH_ENV})"
            raise BackendError(f"{url} refused the request (HTTP {exc.code}); {hint}") from None
        hint = "is it a Kubeflow Pipelines API server?"
        raise BackendError(f"{url} answered HTTP {exc.code} at {HEALTHZ_PATH}; {hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BackendError(f"cannot reach Kubeflow Pipelines at {url} ({reason})") from None
    return parse_healthz(url, body)


def parse_healthz(url: str, body: bytes | str) -> BackendInfo:
    """Read a healthz answer.

    Raises:
        BackendError: When the answer is not a KFP healthz JSON object.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or "tag_name" not in data:
        raise BackendError(f"{url}{HEALTHZ_PATH} did not answer like a Kubeflow Pipelines API server (no tag_name)")
    return BackendInfo(
        url=url,
        tag=str(data["tag_name"]),
        commit=str(data.get("commit_sha", "unknown")),
        multi_user=bool(data.get("multi_user", False)),
    )


def require_version(info: BackendInfo, minimum: str = MIN_KFP_VERSION) -> None:
    """Refuse a backend older than ``minimum`` (or one that does not say its version).

    Raises:
        BackendError: One line naming both versions.
    """
    found, needed = parse_version(info.tag), parse_version(minimum)
    assert needed is not None, minimum
    if found is None:
        raise BackendError(
            f"Kubeflow Pipelines at {info.url} does not report a version (tag_name {info.tag!r}); "
            f"lumbar's pipelines need {minimum} or newer (--skip-version-check to submit anyway)"
        )
    if found < needed:
        raise BackendError(
            f"Kubeflow Pipelines at {info.url} is {info.tag}; lumbar's pipelines need {minimum} or newer"
        )


def check_backend(url: str, creds: Credentials | None = None, timeout: float = 10.0) -> BackendInfo:
    """:func:`healthz` then :func:`require_version`; returns what the backend said."""
    info = healthz(url, (creds or Credentials(None, "none")).token, timeout=timeout)
    require_version(info)
    return info
