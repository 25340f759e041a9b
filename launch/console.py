"""A quiet terminal for local runs: kfp.local's output goes to a log file, the terminal gets one line per task.

kfp.local prints a lot: its logger and the streamed output of every task subprocess (TensorFlow banners,
absl warnings, executor JSON) go to ``sys.stdout``; libraries in this process write to file descriptors
1 and 2 directly. :func:`output_to_log` sends all of it to one log file and hands each line to a
:class:`TaskWatcher`, which notes when each task starts and how it finishes (kfp.local's ``Executing
task 'x'`` and ``Task 'x' finished with status S`` lines) and keeps the last lines of each running task
for the terminal when one fails. :func:`expected_tasks` counts the tasks a run will execute, for the
progress bar's total.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_START = re.compile(r"Executing task '([^']+)'")
_TASK_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
_EXECUTOR_INPUT = "Got executor_input:"


@dataclass(frozen=True)
class TaskRecord:
    """One finished task of a local run."""

    name: str
    status: str
    seconds: float
    tail: tuple[str, ...] = ()
    executor_input: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the task succeeded."""
        return self.status == "SUCCESS"

    @property
    def subject(self) -> str:
        """What the task worked on, from its inputs; empty when they do not say.

        ``vgg16 finetune roi`` for a training task (its parameters), the trained model's name for an
        evaluation (its input model's metadata).
        """
        inputs = self.executor_input.get("inputs", {})
        values = inputs.get("parameterValues", {})
        if "backbone" in values:
            roi = {True: "roi", False: "full"}.get(values.get("roi"), "")
            return " ".join(str(v) for v in (values["backbone"], values.get("mode", ""), roi) if v)
        for artifact in inputs.get("artifacts", {}).values():
            items = artifact.get("artifacts", [])
            metadata = items[0].get("metadata", {}) if len(items) == 1 else {}  # not a collected list of models
            if "backbone" in metadata and "name" in metadata:
                return str(metadata["name"])
        return ""


@dataclass
class _Running:
    """A task that has started: its last lines, and its executor input once printed whole."""

    name: str
    started: float
    tail: deque[str]
    executor_input: dict[str, Any] = field(default_factory=dict)
    _json: list[str] | None = None

    def read(self, line: str) -> None:
        self.tail.append(line)
        if _EXECUTOR_INPUT in line and not self.executor_input:
            self._json = []
        elif self._json is not None:
            self._json.append(line)
            if line.strip() == "}":  # kfp's executor prints the input as indented JSON
                try:
                    self.executor_input = json.loads("\n".join(self._json))
                    self._json = None
                except json.JSONDecodeError:
                    pass


@dataclass
class TaskWatcher:
    """Follows a local run's output line by line: which tasks ran, how long, and how they ended.

    Lines are attributed to the thread that printed them (kfp.local runs a loop's iterations in worker
    threads), so the tail kept for a task holds that task's lines only.

    Attributes:
        on_finish: Called with each finished task.
        tail: How many of a task's last lines to keep.
        finished: The finished tasks, in order.
    """

    on_finish: Callable[[TaskRecord], None] = lambda record: None
    tail: int = 20
    finished: list[TaskRecord] = field(default_factory=list)
    _running: dict[int, _Running] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def failed(self) -> TaskRecord | None:
        """The first task that failed, if one did."""
        return next((r for r in self.finished if not r.ok), None)

    def feed(self, line: str, thread: int | None = None) -> None:
        """Read one line of output printed by ``thread`` (the current thread when None)."""
        thread = threading.get_ident() if thread is None else thread
        plain = _ANSI.sub("", line).rstrip()
        record = None
        with self._lock:
            running = self._running.get(thread)
            if start := _TASK_START.search(plain):
                self._running[thread] = _Running(start[1], time.perf_counter(), deque(maxlen=self.tail))
            elif (end := _TASK_END.search(plain)) and running is not None:
                del self._running[thread]
                seconds = time.perf_counter() - running.started
                record = TaskRecord(end[1], end[2], seconds, tuple(running.tail), running.executor_input)
                self.finished.append(record)
            elif running is not None and plain.strip():
                running.read(plain)
        if record is not None:
            self.on_finish(record)


class _LineWriter(io.TextIOBase):
    """A text stream that appends to the log file and hands every complete line to a callback."""

    def __init__(self, log: TextIO, on_line: Callable[[str], None]) -> None:
        self._log = log
        self._on_line = on_line
        self._partial: dict[int, str] = {}
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._log.fileno()

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        with self._lock:
            self._log.write(text)
            pending = self._partial.pop(thread, "") + text
            *lines, rest = pending.split("\n")
            if rest:
                self._partial[thread] = rest
        for line in lines:
            self._on_line(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._log.flush()


@contextmanager
def output_to_log(log: Path, on_line: Callable[[str], None] = lambda line: None) -> Iterator[TextIO]:
    """Send everything this process and its subprocesses print to ``log``; yield a stream to the terminal.

    Python's ``sys.stdout`` and ``sys.stderr`` become a writer that appends to ``log`` and passes each
    line to ``on_line``; file descriptors 1 and 2 (where subprocesses and C++ libraries write) point at
    ``log`` too. Both are restored on exit.

    Args:
        log: The log file (its folder is created; an existing file is appended to).
        on_line: Called with each line printed through ``sys.stdout``/``sys.stderr``, from the thread
            that printed it.

    Yields:
        A line-buffered text stream to what file descriptor 1 was on entry (the terminal).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    log_file = log.open("a", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    previous = sys.stdout, sys.stderr
    writer = _LineWriter(log_file, on_line)
    sys.stdout = sys.stderr = writer  # type: ignore[assignment]
    try:
        yield terminal
    finally:
        writer.flush()
        sys.stdout, sys.stderr = previous
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err):
            os.close(fd)
        log_file.close()
        terminal.close()


def expected_tasks(pipeline_spec: Mapping[str, Any], params: Mapping[str, Any]) -> int | None:
    """How many tasks a local run of a compiled pipeline executes, or None when that is not knowable.

    Every container task counts once; the body of a ``ParallelFor`` counts once per item, which is known
    when the items come from a ``plan`` task (:func:`lumbar.steps.plan.plan_step`) whose inputs are constants
    or pipeline parameters.

    Args:
        pipeline_spec: The pipeline's IR as a dict (``MessageToDict(pipeline.pipeline_spec)``).
        params: The run's parameters (the rest take their defaults).
    """
    from lumbar.steps.plan import plan_step

    components = pipeline_spec["components"]
    root = pipeline_spec["root"]
    values = {k: v.get("defaultValue") for k, v in root.get("inputDefinitions", {}).get("parameters", {}).items()}
    values.update(params)

    def resolve(inputs: Mapping[str, Any]) -> dict[str, Any] | None:
        resolved = {}
        for key, source in inputs.items():
            if "runtimeValue" in source:
                resolved[key] = source["runtimeValue"]["constant"]
            elif source.get("componentInputParameter") in values:
                resolved[key] = values[source["componentInputParameter"]]
            else:
                return None
        return resolved

    def count(dag: Mapping[str, Any]) -> int | None:
        total = 0
        tasks = dag.get("tasks", {})
        for task in tasks.values():
            component = components[task["componentRef"]["name"]]
            body = count(component["dag"]) if "dag" in component else 1
            if body is None:
                return None
            if "parameterIterator" in task:
                channel = task["parameterIterator"]["items"].get("inputParameter", "")
                producer = task["inputs"]["parameters"].get(channel, {}).get("taskOutputParameter", {})
                planner = tasks.get(producer.get("producerTask", ""), {})
                if not planner.get("componentRef", {}).get("name", "").startswith("comp-plan"):
                    return None
                arguments = resolve(planner.get("inputs", {}).get("parameters", {}))
                if arguments is None:
                    return None
                body *= len(plan_step(**arguments))
            elif "artifactIterator" in task:
                return None
            total += body
        return total

    return count(root["dag"])
