"""One small interface over object-store URIs: ``file:///path`` (and plain paths) and ``s3://bucket/prefix``.

S3 works with any S3-compatible endpoint (MinIO in clusters, SeaweedFS locally) through the
``minio`` client. Endpoint and credentials come only from the environment, with the usual names:

* endpoint: ``LUMBAR_S3_ENDPOINT``, else ``MLFLOW_S3_ENDPOINT_URL``, else ``AWS_ENDPOINT_URL_S3``, else
  ``AWS_ENDPOINT_URL`` (``http://`` means no TLS, ``https://`` TLS; a bare ``host:port`` uses TLS
  unless ``LUMBAR_S3_SECURE=0``);
* credentials: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``), region
  ``AWS_REGION`` or ``AWS_DEFAULT_REGION``;
* ``LUMBAR_S3_RETRY_SECONDS``: how long to keep retrying a failing call (default 30).

Integrity and idempotence: every object this module writes carries its SHA-256 in the object
metadata (``x-amz-meta-sha256``); uploading an unchanged file is skipped; a tree upload that was
interrupted finishes on the next run without duplicates (keys are deterministic and each object is
written whole); downloads and streaming reads verify the hash.

Faults: connection errors and 5xx answers are retried with exponential backoff for a bounded time,
then fail with one line naming the endpoint and the operation; wrong credentials raise
``access denied for <endpoint>/<bucket>``; a missing bucket is created only when asked.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlparse

from typing_extensions import override

from lumbar.errors import InputError, LumbarError
from lumbar.paths import data_dir

_T = TypeVar("_T")
_CHUNK = 1 << 20
SHA256_META = "sha256"


class StoreError(LumbarError):
    """An object-store operation failed (the message names the endpoint or path and the operation)."""


class AccessDeniedError(StoreError):
    """The credentials were refused."""


class StoreUnavailableError(StoreError):
    """The endpoint could not be reached or kept failing within the retry window."""


class IntegrityError(StoreError):
    """An object's content does not match its recorded SHA-256."""


class ObjectNotFoundError(StoreError):
    """The key does not exist."""


def sha256_file(path: str | Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class S3Settings:
    """Endpoint and credentials of an S3-compatible store (secrets never appear in ``repr``).

    Attributes:
        endpoint: ``host:port`` of the endpoint.
        secure: Use TLS.
        access_key: Access key id.
        secret_key: Secret access key.
        session_token: Optional session token.
        region: Optional region.
        retry_seconds: Upper bound on the time spent retrying one call.
    """

    endpoint: str
    secure: bool
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None
    retry_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.endpoint or "/" in self.endpoint:
            raise StoreError(f"S3 endpoint must be host:port, got {self.endpoint!r}")
        if self.retry_seconds < 0:
            raise StoreError("LUMBAR_S3_RETRY_SECONDS must not be negative")

    @property
    def url(self) -> str:
        """The endpoint as a URL (for messages and for MLflow)."""
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        """Read the settings from the environment (see the module docstring for the names).

        Raises:
            StoreError: If no endpoint or no credentials are configured.
        """
        env = os.environ if environ is None else environ
        names = ("LUMBAR_S3_ENDPOINT", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        raw = next((env[n] for n in names if env.get(n)), "")
        if not raw:
            raise StoreError("no S3 endpoint configured: set LUMBAR_S3_ENDPOINT (for example http://127.0.0.1:8333)")
        parsed = urlparse(raw if "://" in raw else f"//{raw}")
        secure_env = env.get("LUMBAR_S3_SECURE", "").strip().lower()
        if parsed.scheme in ("http", "https"):
            secure = parsed.scheme == "https"
        else:
            secure = secure_env not in ("0", "false", "no", "off")
        if secure_env in ("0", "false", "no", "off"):
            secure = False
        access, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
        if not access or not secret:
            raise StoreError(f"no S3 credentials for {raw}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        try:
            retry = float(env.get("LUMBAR_S3_RETRY_SECONDS", "30"))
        except ValueError as exc:
            raise StoreError("LUMBAR_S3_RETRY_SECONDS must be a number of seconds") from exc
        return cls(
            endpoint=parsed.netloc,
            secure=secure,
            access_key=access,
            secret_key=secret,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            retry_seconds=retry,
        )


@dataclass(frozen=True)
class TreeResult:
    """What a tree transfer did."""

    transferred: int
    skipped: int

    @property
    def total(self) -> int:
        """Files looked at."""
        return self.transferred + self.skipped


class Store(ABC):
    """Objects under a root URI, addressed by ``/``-separated keys relative to it."""

    @property
    @abstractmethod
    def uri(self) -> str:
        """The root URI of this store."""

    @abstractmethod
    def child(self, prefix: str) -> Store:
        """Return the store rooted at ``prefix`` below this one."""

    @abstractmethod
    def put_file(self, local: str | Path, key: str, force: bool = False) -> bool:
        """Upload a file; return False when an identical object (same SHA-256) was already there.

        ``force`` uploads even when the recorded SHA-256 matches (to repair an object whose bytes
        no longer match what was recorded).
        """

    def content_sha256(self, key: str) -> str | None:
        """The SHA-256 of the object's bytes as stored now (read in full, not taken from metadata); None if missing."""
        digest = hashlib.sha256()
        try:
            stream = self._raw(key)
        except ObjectNotFoundError:
            return None
        with stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    @abstractmethod
    def _raw(self, key: str) -> BinaryIO:
        """Open an object for reading without verifying it (for :meth:`content_sha256`)."""

    @abstractmethod
    def get_file(self, key: str, local: str | Path) -> Path:
        """Download an object to a local file (atomically), verifying its SHA-256."""

    @abstractmethod
    def put_bytes(self, data: bytes, key: str) -> None:
        """Write a small object."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open an object for a streaming read; the hash is checked when the stream reaches its end."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True when the key exists."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key under ``prefix`` (recursively), relative to this store's root."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object (no error when it does not exist)."""

    def get_bytes(self, key: str) -> bytes:
        """Read a whole (small) object, verifying its hash."""
        with self.open(key) as stream:
            return stream.read()

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; return how many."""
        keys = list(self.list(prefix))
        for key in keys:
            self.delete(key)
        return len(keys)

    def put_tree(
        self, local_dir: str | Path, prefix: str = "", workers: int = 8, progress: Callable[[int], None] | None = None
    ) -> TreeResult:
        """Upload every file under ``local_dir`` to ``prefix``; unchanged files are skipped.

        Re-running after an interruption uploads only what is missing or changed.
        """
        root = Path(local_dir)
        if not root.is_dir():
            raise StoreError(f"{root} is not a folder")
        files = sorted(p for p in root.rglob("*") if p.is_file())

        def one(path: Path) -> bool:
            return self.put_file(path, _join(prefix, path.relative_to(root).as_posix()))

        return _transfer_all(one, files, workers, progress)

    def get_tree(
        self, prefix: str, local_dir: str | Path, workers: int = 8, progress: Callable[[int], None] | None = None
    ) -> TreeResult:
        """Download every object under ``prefix`` into ``local_dir``; verified files already there are skipped."""
        root = Path(local_dir)
        keys = list(self.list(prefix))
        base = prefix.strip("/")

        def one(key: str) -> bool:
            relative = key[len(base) :].lstrip("/") if base else key
            target = root / relative
            expected = self.sha256(key)
            if target.is_file() and expected and sha256_file(target) == expected:
                return False
            self.get_file(key, target)
            return True

        return _transfer_all(one, keys, workers, progress)

    @abstractmethod
    def sha256(self, key: str) -> str | None:
        """The SHA-256 recorded for (or, locally, computed from) an object; None when unknown."""


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _transfer_all(
    fn: Callable[[_T], bool], items: list[_T], workers: int, progress: Callable[[int], None] | None
) -> TreeResult:
    """Run ``fn`` (True: transferred, False: skipped) on each item, ``workers`` at a time, ticking ``progress``."""

    def one(item: _T) -> bool:
        done = fn(item)
        if progress:
            progress(1)
        return done

    if workers <= 1 or len(items) <= 1:
        results = [one(item) for item in items]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, items))
    transferred = sum(results)
    return TreeResult(transferred, len(results) - transferred)


def _write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``target``, then rename it: readers never see a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    write(tmp)
    tmp.replace(target)


class _VerifyingReader:
    """Wraps a byte stream and checks its SHA-256 when the end is reached."""

    def __init__(self, raw: BinaryIO, expected: str | None, name: str, on_close: Callable[[], None] | None = None):
        self._raw, self._expected, self._name, self._on_close = raw, expected, name, on_close
        self._digest = hashlib.sha256()
        self._checked = False

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read() if size is None or size < 0 else self._raw.read(size)
        self._digest.update(data)
        if (not data or size is None or size < 0) and not self._checked:
            self._checked = True
            if self._expected and self._digest.hexdigest() != self._expected:
                raise IntegrityError(f"{self._name} is corrupt: its SHA-256 does not match the recorded one")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()
        if self._on_close:
            self._on_close()

    def __enter__(self) -> _VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalStore(Store):
    """A folder used as a store (``file:///path`` or a plain path). Hashes are computed from the files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()

    @override
    @property
    def uri(self) -> str:
        return self.root.as_uri()

    @override
    def child(self, prefix: str) -> LocalStore:
        return LocalStore(self.root / prefix.strip("/"))

    def _path(self, key: str) -> Path:
        path = (self.root / key.strip("/")).resolve()
        if path != self.root.resolve() and self.root.resolve() not in path.parents:
            raise StoreError(f"key {key!r} points outside {self.root}")
        return path

    def _existing(self, key: str) -> Path:
        """The file of ``key``; :class:`ObjectNotFoundError` when there is none."""
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(f"{path} does not exist")
        return path

    @override
    def _raw(self, key: str) -> BinaryIO:
        return self.open(key)

    @override
    def put_file(self, local: str | Path, key: str, force: bool = False) -> bool:
        target = self._path(key)
        if not force and target.is_file() and sha256_file(target) == sha256_file(local):
            return False
        _write_atomically(target, lambda tmp: shutil.copyfile(local, tmp))
        return True

    @override
    def get_file(self, key: str, local: str | Path) -> Path:
        source = self._existing(key)
        local = Path(local)
        _write_atomically(local, lambda tmp: shutil.copyfile(source, tmp))
        return local

    @override
    def put_bytes(self, data: bytes, key: str) -> None:
        _write_atomically(self._path(key), lambda tmp: tmp.write_bytes(data))

    @override
    def open(self, key: str) -> BinaryIO:
        return self._existing(key).open("rb")

    @override
    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    @override
    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            yield base.relative_to(self.root).as_posix()
            return
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and ".tmp-" not in path.name:
                yield path.relative_to(self.root).as_posix()

    @override
    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    @override
    def sha256(self, key: str) -> str | None:
        path = self._path(key)
        return sha256_file(path) if path.is_file() else None


_ACCESS_CODES = {
    "AccessDenied",  # the S3 code for a key without permission (per-role identities, k8s/README.md)
    "AccessDeniedError",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}
_RETRY_CODES = {"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed"}
_MISSING_CODES = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}


class S3Store(Store):
    """A bucket (and key prefix) of an S3-compatible endpoint."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        settings: S3Settings | None = None,
        create_bucket: bool = False,
        _client: object | None = None,
    ) -> None:
        if not bucket:
            raise StoreError("an s3:// URI needs a bucket name: s3://bucket/prefix")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise StoreError(f"invalid bucket name {bucket!r}: use 3-63 lower-case letters, digits, '.' or '-'")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.settings = settings or S3Settings.from_env()
        self._client = _client or self._make_client()
        if create_bucket:
            self.ensure_bucket()

    def _make_client(self):  # type: ignore[no-untyped-def]
        import urllib3
        from minio import Minio

        s = self.settings
        # no retries inside urllib3: this class retries with its own bounded backoff
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            retries=False,
            maxsize=16,
            cert_reqs="CERT_REQUIRED" if s.secure else "CERT_NONE",
        )
        return Minio(
            s.endpoint,
            access_key=s.access_key,
            secret_key=s.secret_key,
            session_token=s.session_token,
            secure=s.secure,
            region=s.region,
            http_client=http,
        )

    @override
    @property
    def uri(self) -> str:
        return f"s3://{_join(self.bucket, self.prefix)}"

    @override
    def child(self, prefix: str) -> S3Store:
        return S3Store(self.bucket, _join(self.prefix, prefix), self.settings, _client=self._client)

    def _key(self, key: str) -> str:
        return _join(self.prefix, key)

    def _call(self, operation: str, fn: Callable[[], _T]) -> _T:
        """Run one client call, retrying transient failures with exponential backoff for a bounded time."""
        import urllib3
        from minio.error import InvalidResponseError, S3Error, ServerError

        where = f"{self.settings.url}/{self.bucket}"
        deadline = time.monotonic() + self.settings.retry_seconds
        delay = 0.2
        while True:
            try:
                return fn()
            except S3Error as exc:
                if exc.code in _ACCESS_CODES:
                    raise AccessDeniedError(f"access denied for {where} ({operation}: {exc.code})") from None
                if exc.code == "NoSuchBucket":
                    raise StoreError(
                        f"bucket {self.bucket} does not exist at {self.settings.url} ({operation}); "
                        "create it with --create-bucket or `lumbar store mb`"
                    ) from None
                if exc.code in _MISSING_CODES:
                    raise ObjectNotFoundError(f"{operation}: no such object in {where}") from None
                if exc.code not in _RETRY_CODES:
                    raise StoreError(f"{operation} failed at {where}: {exc.code}: {exc.message}") from None
                last = f"{exc.code}"
            except (ServerError, InvalidResponseError) as exc:
                status = getattr(exc, "_status_code", None) or getattr(exc, "status_code", None)
                if status is not None and int(status) < 500:
                    raise StoreError(f"{operation} failed at {where}: HTTP {status}") from None
                last = f"HTTP {status or 'error'}"
            except (urllib3.exceptions.HTTPError, ConnectionError, OSError) as exc:
                last = exc.__class__.__name__
            if time.monotonic() + delay > deadline:
                raise StoreUnavailableError(
                    f"{operation} failed: S3 endpoint {self.settings.url} unreachable or failing for "
                    f"{self.settings.retry_seconds:.0f} s ({last})"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; return True when it was created."""
        client = self._client
        if self._call(f"check bucket {self.bucket}", lambda: client.bucket_exists(self.bucket)):  # type: ignore[attr-defined]
            return False
        self._call(f"create bucket {self.bucket}", lambda: client.make_bucket(self.bucket))  # type: ignore[attr-defined]
        return True

    def _stat(self, key: str):  # type: ignore[no-untyped-def]
        client, name = self._client, self._key(key)
        try:
            return self._call(f"stat {self.uri}/{key}", lambda: client.stat_object(self.bucket, name))  # type: ignore[attr-defined]
        except ObjectNotFoundError:
            return None

    @staticmethod
    def _recorded(stat) -> str | None:  # type: ignore[no-untyped-def]
        return (stat.metadata or {}).get(f"x-amz-meta-{SHA256_META}")

    def _existing(self, key: str):  # type: ignore[no-untyped-def]
        stat = self._stat(key)
        if stat is None:
            raise ObjectNotFoundError(f"{self.uri}/{key} does not exist")
        return stat

    @override
    def sha256(self, key: str) -> str | None:
        stat = self._stat(key)
        return None if stat is None else self._recorded(stat)

    def _reader(self, key: str, expected: str | None) -> BinaryIO:
        """A stream of the object ``key`` that checks its SHA-256 against ``expected`` (None: no check)."""
        client, name = self._client, self._key(key)
        response = self._call(f"read {self.uri}/{key}", lambda: client.get_object(self.bucket, name))  # type: ignore[attr-defined]
        return _VerifyingReader(response, expected, f"{self.uri}/{key}", response.release_conn)  # type: ignore[return-value]

    @override
    def _raw(self, key: str) -> BinaryIO:
        self._existing(key)
        return self._reader(key, None)

    @override
    def put_file(self, local: str | Path, key: str, force: bool = False) -> bool:
        digest = sha256_file(local)
        stat = self._stat(key)
        if not force and stat is not None and self._recorded(stat) == digest:
            return False
        client, name = self._client, self._key(key)
        self._call(
            f"upload {self.uri}/{key}",
            lambda: client.fput_object(  # type: ignore[attr-defined]
                self.bucket, name, str(local), metadata={SHA256_META: digest}
            ),
        )
        return True

    @override
    def put_bytes(self, data: bytes, key: str) -> None:
        import io

        client, name = self._client, self._key(key)
        digest = hashlib.sha256(data).hexdigest()
        self._call(
            f"upload {self.uri}/{key}",
            lambda: client.put_object(  # type: ignore[attr-defined]
                self.bucket, name, io.BytesIO(data), len(data), metadata={SHA256_META: digest}
            ),
        )

    @override
    def get_file(self, key: str, local: str | Path) -> Path:
        expected = self._recorded(self._existing(key))
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)

        def download() -> str:
            fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.")
            digest = hashlib.sha256()
            response = self._client.get_object(self.bucket, self._key(key))  # type: ignore[attr-defined]
            try:
                with os.fdopen(fd, "wb") as handle:
                    for chunk in response.stream(_CHUNK):
                        digest.update(chunk)
                        handle.write(chunk)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            finally:
                response.close()
                response.release_conn()
            if expected and digest.hexdigest() != expected:
                Path(tmp).unlink(missing_ok=True)
                raise IntegrityError(f"{self.uri}/{key} is corrupt: its SHA-256 does not match the recorded one")
            return tmp

        tmp = self._call(f"download {self.uri}/{key}", download)
        Path(tmp).replace(local)
        return local

    @override
    def open(self, key: str) -> BinaryIO:
        return self._reader(key, self._recorded(self._existing(key)))

    @override
    def exists(self, key: str) -> bool:
        return self._stat(key) is not None

    @override
    def list(self, prefix: str = "") -> Iterator[str]:
        client = self._client
        base = self._key(prefix)
        start = len(self.prefix) + 1 if self.prefix else 0
        folder = base + "/" if base else ""
        objects = self._call(
            f"list {self.uri}/{prefix}",
            lambda: list(
                client.list_objects(  # type: ignore[attr-defined]
                    self.bucket, prefix=folder, recursive=True
                )
            ),
        )
        if not objects and prefix and self._stat(prefix) is not None:  # the prefix is itself an object
            yield base[start:]
            return
        for obj in objects:
            if not obj.is_dir:
                yield obj.object_name[start:]

    @override
    def delete(self, key: str) -> None:
        client, name = self._client, self._key(key)
        self._call(f"delete {self.uri}/{key}", lambda: client.remove_object(self.bucket, name))  # type: ignore[attr-defined]


def open_store(uri: str | Path, create_bucket: bool = False, environ: Mapping[str, str] | None = None) -> Store:
    """Return the store for a URI: ``s3://bucket/prefix``, ``file:///path`` or a plain path.

    Args:
        uri: The store URI.
        create_bucket: Create a missing S3 bucket (never done unless asked).
        environ: Environment to read S3 settings from (defaults to ``os.environ``).
    """
    text = str(uri)
    if text.startswith("s3://"):
        parsed = urlparse(text)
        return S3Store(parsed.netloc, parsed.path, S3Settings.from_env(environ), create_bucket=create_bucket)
    if text.startswith("file://"):
        return LocalStore(file_uri_path(text))
    if "://" in text:
        raise StoreError(f"unsupported store URI {text!r}: use s3://bucket/prefix, file:///path or a folder path")
    return LocalStore(text)


def file_uri_path(uri: str) -> Path:
    """The folder a ``file://`` URI names, with percent-escapes decoded as :meth:`LocalStore.uri` writes them."""
    return Path(unquote(urlparse(uri).path))


def is_remote(uri: str | Path) -> bool:
    """True for ``s3://`` URIs."""
    return str(uri).startswith("s3://")


def _stage(uri: str, folder: bool) -> Path:
    kind = "folder" if folder else "file"
    if not is_remote(uri):
        path = file_uri_path(uri) if uri.startswith("file://") else Path(uri)
        if not (path.is_dir() if folder else path.is_file()):
            raise InputError(f"{uri} is not a {kind}")
        return path
    target = data_dir() / "cache" / "staging" / hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    if folder:
        open_store(uri).get_tree("", target)  # unchanged files are skipped on a second run
        return target
    parent, _, name = uri.rstrip("/").rpartition("/")
    return open_store(parent).get_file(name, target / name)


def stage_folder(uri: str) -> Path:
    """A local folder holding the tree at ``uri`` (a folder, ``file://`` or ``s3://bucket/prefix``).

    A local folder is returned as is; a remote tree is downloaded once into ``<data dir>/cache/staging``
    (unchanged files are skipped on a later call).

    Raises:
        InputError: When a local folder does not exist.
    """
    return _stage(uri, folder=True)


def stage_file(uri: str) -> Path:
    """A local copy of the file at ``uri`` (returned as is when it is already local).

    Raises:
        InputError: When a local file does not exist.
    """
    return _stage(uri, folder=False)
