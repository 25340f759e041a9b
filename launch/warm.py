"""Warm task starts for kfp.local: each task forks from a Python that has imported TensorFlow once.

kfp.local's ``SubprocessRunner`` starts every task as ``python -m kfp.dsl.executor_main``, and every
task then imports TensorFlow, Keras and MLflow again: 8-10 s on two cores, where an evaluation's own
work is 3-5 s (a demo run has 50 such tasks). Inside :func:`warm_tasks` a local run keeps one *zygote*:
a single-threaded Python that imported those modules once and never ran a TensorFlow op. For each task
it forks a child that runs the executor as the subprocess would have: the same arguments, environment
(replaced whole), working directory and output (a pipe read by kfp.local's thread, as before), and its
exit status is the task's.

A task falls back to kfp's own subprocess when the zygote is not running (it failed to start, or was
killed), when its command is not the lightweight-component shape this module knows (a pip install,
another kfp version's script), or when its environment differs from the zygote's in a variable read at
import time (``TF_*``, ``KERAS_*``, ...). ``LUMBAR_WARM_TASKS=0`` turns it off; it is on for Linux only
(``fork`` after importing TensorFlow is not safe on macOS).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

#: Turn warm starts off with ``LUMBAR_WARM_TASKS=0``.
WARM_ENV = "LUMBAR_WARM_TASKS"
#: Imported once by the zygote: what the components' bodies import (the heavy part of a task's start).
PRELOAD = (
    "tensorflow",
    "keras",
    "mlflow",
    "matplotlib",
    "kfp.dsl.executor_main",
    "lumbar.models",
    "lumbar.train",
    "lumbar.evaluate",
    "lumbar.tracking",
    "lumbar.steps",
)
#: Environment variables read when those modules are imported: a task that sets them otherwise starts cold.
IMPORT_TIME_PREFIXES = ("TF_", "KERAS_", "XLA_", "JAX_", "CUDA_", "MPL", "PYTHON", "OMP_", "LD_")
#: The line of kfp's lightweight-component script that names the component's source file.
_MODULE_MARK = '"$program_path/ephemeral_component.py"'
_HEADER = struct.Struct("!Q")


def enabled() -> bool:
    """Whether local runs start tasks warm on this machine (Linux, and not turned off)."""
    return sys.platform.startswith("linux") and os.environ.get(WARM_ENV, "1") != "0"


def executor_argv(full_command: Sequence[str]) -> tuple[str, list[str]] | None:
    """The component's source and the executor's arguments in kfp's command, or None for another shape."""
    command = list(full_command)
    if len(command) < 4 or command[:2] != ["sh", "-ec"]:  # exactly `sh -ec <script> <source> <args...>`
        return None
    marked = [i for i, part in enumerate(command) if _MODULE_MARK in part and '"$@"' in part]
    if marked != [2] or any("pip install" in part for part in command):
        return None
    return command[3], command[4:]


def _import_time(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES)}


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class Zygote:
    """A preloaded Python that forks one child per task; start it with :meth:`start`."""

    def __init__(self, folder: Path, preload: Sequence[str] = PRELOAD) -> None:
        self.socket_path = folder / "zygote.sock"
        self.preload = tuple(preload)
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    def start(self) -> None:
        """Start the zygote (its imports go on while the first tasks connect and wait)."""
        self.env = dict(os.environ)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "launch.warm", str(self.socket_path), *self.preload],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[1],
            start_new_session=True,
        )

    def alive(self) -> bool:
        """Whether the zygote process is running."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the zygote and any task still running from it (after a failed task, its siblings)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def accepts(self, env: Mapping[str, str]) -> bool:
        """Whether a task with environment ``env`` may start from this zygote."""
        return self.alive() and _import_time(env) == _import_time(self.env)

    def run(self, full_command: Sequence[str], env: Mapping[str, str]) -> int | None:
        """Run one task forked from the zygote, printing its output; None when it cannot be started warm.

        Its output is printed line by line, as kfp.local's subprocess runner prints it.
        """
        parsed = executor_argv(full_command)
        if parsed is None or not self.accepts(env):
            return None
        source, args = parsed
        payload = json.dumps({"source": source, "args": args, "env": dict(env), "cwd": os.getcwd()}).encode()
        read_end, write_end = os.pipe()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            for _ in range(600):  # the zygote binds its socket at once; allow it a minute to appear
                try:
                    conn.connect(str(self.socket_path))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if not self.alive():
                        raise
                    time.sleep(0.1)
            else:
                raise ConnectionError("zygote socket did not appear")
            socket.send_fds(conn, [_HEADER.pack(len(payload))], [write_end])
            conn.sendall(payload)
        except OSError:
            conn.close()
            os.close(read_end)
            os.close(write_end)
            return None
        os.close(write_end)
        with conn, os.fdopen(read_end, "r", encoding="utf-8", errors="replace") as output:
            for line in output:
                print(line, end="")
            print("\n")
            answer = conn.makefile("r").readline().strip()
        return int(answer) if answer.lstrip("-").isdigit() else 1


@contextlib.contextmanager
def warm_tasks() -> Iterator[Zygote | None]:
    """Inside this context kfp.local starts its subprocess tasks from a zygote (when :func:`enabled`)."""
    if not enabled():
        yield None
        return
    from kfp.local import subprocess_task_handler as handler

    cold = handler.run_local_subprocess
    with tempfile.TemporaryDirectory(prefix="lumbar-warm-") as folder:
        zygote = Zygote(Path(folder))
        zygote.start()

        def run_local_subprocess(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
            code = zygote.run(full_command, {**os.environ, **(env_vars or {})})
            return cold(full_command=full_command, env_vars=env_vars) if code is None else code

        handler.run_local_subprocess = run_local_subprocess
        try:
            yield zygote
        finally:
            handler.run_local_subprocess = cold
            zygote.stop()


# --- the zygote's side --------------------------------------------------------------------------------


def _run_task(request: dict, output_fd: int) -> int:
    """In the forked child: run kfp's executor on the request, as ``sh -ec`` + ``python -m`` would."""
    import runpy
    import traceback

    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["_KFP_RUNTIME"] = "true"
    module = Path(tempfile.mkdtemp()) / "ephemeral_component.py"
    module.write_text(request["source"])
    sys.argv = ["executor_main", "--component_module_path", str(module), *request["args"]]
    code = 0
    try:
        runpy.run_module("kfp.dsl.executor_main", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # the task's failure, reported as a subprocess would report it
        traceback.print_exc()
        code = 1
    return code


def _die_with_parent(parent: int, sig: int) -> None:
    """Have the kernel send ``sig`` to this process when its parent ends (Linux), and end now if it has.

    A launcher killed without its ``finally`` (SIGKILL, a crashed test run) must not leave a zygote with
    TensorFlow loaded, or tasks forked from it, running on.
    """
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sig, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(0)


def _serve(socket_path: str, preload: Sequence[str]) -> None:
    """The zygote's loop: import ``preload``, then fork a waiter per connection, which forks the task.

    The zygote ends with the launcher that started it, a waiter with the zygote and a task with its waiter.
    """
    import importlib

    _die_with_parent(os.getppid(), signal.SIGTERM)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    for name in preload:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        conn, _ = listener.accept()
        try:
            header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 1)
            if len(header) < _HEADER.size:
                header += _recv_exact(conn, _HEADER.size - len(header))
            request = json.loads(_recv_exact(conn, _HEADER.unpack(header)[0]))
        except (OSError, ValueError, ConnectionError):
            conn.close()
            continue
        zygote = os.getpid()
        if os.fork() == 0:  # the waiter: forks the task, waits for it, answers its exit status
            _die_with_parent(zygote, signal.SIGKILL)
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            waiter = os.getpid()
            task = os.fork()
            if task == 0:
                _die_with_parent(waiter, signal.SIGKILL)
                conn.close()
                code = _run_task(request, fds[0])
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
            for fd in fds:
                os.close(fd)
            _, status = os.waitpid(task, 0)
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                conn.sendall(f"{code}\n".encode())
            os._exit(0)
        for fd in fds:
            os.close(fd)
        conn.close()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2:])
