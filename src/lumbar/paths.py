"""Where lumbar keeps its own files (the project's data directory)."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from lumbar.errors import InputError

#: Environment variable naming the data directory.
DATA_DIR_ENV = "LUMBAR_DATA_DIR"
#: The reproducible-builds variable: a build's recorded time, in seconds since 1970 (UTC).
SOURCE_DATE_ENV = "SOURCE_DATE_EPOCH"


def build_time(environ: Mapping[str, str] | None = None) -> str:
    """The time an output records as its build time, ISO 8601 in UTC to the second.

    ``$SOURCE_DATE_EPOCH`` when set (https://reproducible-builds.org/specs/source-date-epoch/): the same
    inputs then give byte-identical reports and so the same content-addressed dataset version, whichever
    machine or container builds them. Otherwise the current time.

    Raises:
        InputError: When ``SOURCE_DATE_EPOCH`` is not a whole number of seconds.
    """
    value = (os.environ if environ is None else environ).get(SOURCE_DATE_ENV, "").strip()
    if not value:
        return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if not value.isdigit():
        raise InputError(f"{SOURCE_DATE_ENV} must be a whole number of seconds since 1970, not {value[:20]!r}")
    return dt.datetime.fromtimestamp(int(value), dt.UTC).isoformat(timespec="seconds")


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the data directory: ``$LUMBAR_DATA_DIR`` when set, else ``./data`` (not created here).

    It holds the default MLflow store (``mlflow.db``, ``mlartifacts/``), the dataset cache
    (``cache/``) and the local services' state (``services/``).
    """
    env = os.environ if environ is None else environ
    return Path(env.get(DATA_DIR_ENV) or "data").expanduser().absolute()


def _first_existing(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path("/")


def check_output_folder(out: Path, option: str = "--out") -> None:
    """Refuse an output folder that is a file, lies inside a file, or cannot be created.

    Raises:
        InputError: One sentence naming the option and what is wrong.
    """
    from lumbar.errors import InputError

    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out} is a file, not a folder; choose a folder")
    existing = _first_existing(out)
    if not existing.is_dir():
        raise InputError(f"{option} {out} lies inside {existing}, which is a file, not a folder")


def check_output_file(path: Path, option: str) -> None:
    """Refuse an output file that is a folder or whose folder cannot be written (tried, not guessed).

    Raises:
        InputError: One sentence naming the option and what is wrong.
    """
    from lumbar.errors import InputError

    path = Path(path).absolute()
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; name a file")
    existing = _first_existing(path.parent)
    if not existing.is_dir():
        raise InputError(f"{option} {path} lies inside {existing}, which is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".lumbar-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"{option} {path} cannot be written ({exc.strerror or exc})") from None


def write_private(path: Path, rows: Iterable[Sequence[object]], option: str) -> None:
    """Write a CSV file only its owner can read (mode 0600), whatever file was there before.

    The rows go to a new file created with mode 0600 in the same folder, which then replaces ``path``, so
    an existing file's wider mode is never kept; the mode is checked afterwards (a file system that
    ignores modes is refused, and the file removed).

    Raises:
        InputError: When the file cannot be written or made private.
    """
    import csv

    from lumbar.errors import InputError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"{option} {path} cannot be written ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        if os.stat(path).st_mode & 0o077:
            path.unlink()
            raise InputError(
                f"{option} {path} cannot be made readable by its owner only (mode 0600); choose another place"
            )
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise InputError(f"{option} {path} cannot be written ({exc.strerror or exc})") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def file_kind(mode: int) -> str:
    """Name the kind of a file system entry that is not a regular file (for reasons in reports)."""
    for test, name in (
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "folder"),
    ):
        if test(mode):
            return f"{name}, not a regular file"
    return "not a regular file"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove ``.NAME.partial-PID`` folders beside ``out`` left by builds that no longer run (killed ones).

    Only folders of this user whose PID is not alive are removed; a running build's folder is kept.

    Returns:
        The folders removed.
    """
    out = Path(out)
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.partial-(\d+)$")
    removed = []
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return removed
    for sibling in siblings:
        match = pattern.match(sibling.name)
        if not match or sibling.is_symlink() or not sibling.is_dir():
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_alive(pid) or sibling.stat().st_uid != os.getuid():
            continue
        shutil.rmtree(sibling, ignore_errors=True)
        removed.append(sibling)
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM received: unwinds like Ctrl-C, so every ``finally`` cleans up."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) as SIGINT would.

    Only the main thread can set signal handlers; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def replacing_folder(out: Path, marker: str = "manifest.csv") -> Iterator[Path]:
    """Build into a hidden sibling folder that replaces ``out`` only when the block succeeds.

    A crash, an error, Ctrl-C or SIGTERM never leaves a half-written folder where a complete one is
    expected, and the partial folder is removed either way; partial folders left by killed builds
    (SIGKILL, power loss) are removed by the next build of the same folder.

    Args:
        out: The folder to (re)place.
        marker: A file that marks ``out`` as a folder lumbar built (it is refused otherwise).

    Raises:
        InputError: If ``out`` is a file, lies inside a file, cannot be created, or exists, is not
            empty and has no ``marker``.
    """
    from lumbar.errors import InputError

    out = Path(out)
    check_output_folder(out)
    if out.exists() and any(out.iterdir()) and not (out / marker).exists():
        raise InputError(
            f"output folder {out} exists and is not a dataset built by lumbar; choose an empty or new folder"
        )
    work = out.parent / f".{out.name}.partial-{os.getpid()}"
    with sigterm_as_interrupt():
        try:  # one try from before the folder exists: an interrupt right after mkdir still removes it
            try:
                remove_stale_partials(out)
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
            except OSError as exc:
                raise InputError(f"output folder {out} cannot be created ({exc.strerror or exc})") from None
            yield work
            if out.exists():
                shutil.rmtree(out)
            work.rename(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
