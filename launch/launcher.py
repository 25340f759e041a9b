"""The pipelines by name, and the three ways to use one: compile to IR YAML, run locally, submit to a cluster.

``lumbar pipeline list | compile | run --local | submit`` are thin commands over these functions.

* Local runs use ``kfp.local`` with ``SubprocessRunner(use_venv=False)``: every task is a subprocess of
  this Python (no Docker, no per-task pip install), the pipeline root is ``<data dir>/pipelines``
  (kfp.local takes only a local root), and the tasks log to MLflow at ``MLFLOW_TRACKING_URI``, or at
  the project's local SQLite store when it is unset. Platform settings (GPUs, node selectors,
  secrets) do not apply locally; the tasks read credentials from this process's environment. Tasks
  fork from a process that has imported TensorFlow once (:mod:`launch.warm`; ``LUMBAR_WARM_TASKS=0``:
  a fresh Python per task, as kfp.local does by itself).
* Submission uploads the compiled pipeline to a Kubeflow Pipelines API server with ``kfp.Client``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch.warm import warm_tasks
from lumbar.errors import InputError, LumbarError
from lumbar.paths import DATA_DIR_ENV, data_dir
from lumbar.procedures import PROCEDURES
from lumbar.tracking import RUN_ID_ENV
from pipelines import dataset_c, paper
from pipelines.settings import ClusterSettings


def _builder(dotted: str) -> Callable[[ClusterSettings], Any]:
    """The pipeline builder a procedure names as ``module:function`` (the library never imports kfp)."""
    module, _, function = dotted.partition(":")
    return getattr(importlib.import_module(module), function)


#: The pipelines by name: Dataset C, each registered procedure (:data:`lumbar.procedures.PROCEDURES`), the paper.
PIPELINES: dict[str, Callable[[ClusterSettings], Any]] = {
    "dataset_c": dataset_c.build,
    **{name: _builder(p.pipeline) for name, p in PROCEDURES.items()},
    "paper": paper.build,
    "paper_dataset": paper.build_from_dataset,
}


class SubmitError(LumbarError):
    """The Kubeflow Pipelines API server could not be reached or refused the run."""


def get(name: str, settings: ClusterSettings | None = None) -> Any:
    """The pipeline ``name`` built against ``settings`` (the defaults when None).

    Raises:
        InputError: For an unknown name.
    """
    if name not in PIPELINES:
        raise InputError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
    with _caller_name_without_source():
        return PIPELINES[name](settings or ClusterSettings())


class _CallerNameOnly:
    """What kfp's ``PipelineTask`` needs of :mod:`inspect`: ``stack()[1][3]``, its caller's name."""

    @staticmethod
    def stack(context: int = 1) -> list[tuple[Any, None, None, str]]:
        frame, records = sys._getframe(1), []
        while frame is not None and len(records) < 2:
            records.append((frame, None, None, frame.f_code.co_name))
            frame = frame.f_back
        return records


@contextmanager
def _caller_name_without_source() -> Iterator[None]:
    """Build pipelines without kfp reading the whole call stack's source for each resource setting.

    ``PipelineTask._ensure_container_spec_exists`` (kfp 2.x) calls ``inspect.stack()`` (every frame, with
    its source lines and module lookup) only to name its caller in an error message, once per
    ``set_cpu_limit``-style call: 113 times for ``paper``. In a process that has imported TensorFlow
    (6,000 modules to search) that made building ``paper`` take 3.8 s instead of 0.5 s. Inside this
    context kfp's module sees a stand-in that gives the caller's name from the frame alone.
    """
    from kfp.dsl import pipeline_task

    found = getattr(pipeline_task, "inspect", None)
    if found is None:  # another kfp: leave it alone
        yield
        return
    pipeline_task.inspect = _CallerNameOnly  # type: ignore[assignment]
    try:
        yield
    finally:
        pipeline_task.inspect = found


def describe(name: str) -> dict[str, Any]:
    """Name, description and parameters (with their types and defaults) of one pipeline."""
    pipeline = get(name)
    params = {}
    for param in inspect.signature(pipeline.pipeline_func).parameters.values():
        default = None if param.default is inspect.Parameter.empty else param.default
        params[param.name] = {
            "type": param.annotation.__name__,
            "default": default,
            "required": param.default is inspect.Parameter.empty,
        }
    return {"name": name, "description": pipeline.description or "", "parameters": params}


def parse_params(name: str, pairs: list[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into the pipeline's typed parameters.

    Raises:
        InputError: For a malformed pair, an unknown parameter, a value of the wrong type, or a missing
            required parameter.
    """
    spec = describe(name)["parameters"]
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"parameter {pair!r} must be KEY=VALUE")
        if key not in spec:
            raise InputError(f"{name} has no parameter {key!r}; it has {', '.join(spec)}")
        kind = spec[key]["type"]
        try:
            if kind == "bool":
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                values[key] = text.lower() in ("true", "1", "yes")
            else:
                values[key] = {"int": int, "float": float}.get(kind, str)(text)
        except ValueError:
            raise InputError(f"parameter {key} of {name} must be {kind}, got {text!r}") from None
    missing = [k for k, v in spec.items() if v["required"] and k not in values]
    if missing:
        raise InputError(f"{name} needs parameter {missing[0]} (give it as {missing[0]}=VALUE)")
    return values


def compile_pipeline(
    name: str, out: str | Path, settings: ClusterSettings | None = None, images: Mapping[str, str] | None = None
) -> Path:
    """Compile ``name`` to Kubeflow Pipelines IR YAML at ``out``.

    Args:
        name: Pipeline name.
        out: The YAML file to write.
        settings: Cluster settings to compile with.
        images: Default image reference -> the reference to run (``components.images.compiled_images``).
    """
    from kfp import compiler

    from components.images import rewrite

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(get(name, settings), str(out))
    if images:
        out.write_text(rewrite(out.read_text(encoding="utf-8"), images), encoding="utf-8")
    return out


@contextmanager
def _environment(defaults: Mapping[str, str], overrides: Mapping[str, str] | None = None) -> Iterator[None]:
    """Set ``defaults`` not set yet and all ``overrides`` for the duration, then restore the environment."""
    overrides = dict(overrides or {})
    saved = {k: os.environ.get(k) for k in {*defaults, *overrides}}
    os.environ.update({k: v for k, v in defaults.items() if k not in os.environ})
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def one_logger_for_all_tasks() -> Iterator[None]:
    """Give kfp.local one log handler for the whole run instead of one per task.

    kfp.local swaps the root logger's handlers in and out around every task (``local_logger_context``),
    which is not thread-safe: with two loop iterations at once, the task that ends first restores the
    handlers it found and the other task's ``Task '...' finished`` line is dropped (seen in a demo run:
    62 of 63 tasks reported). Inside this context kfp's per-task swap does nothing and its handler, with
    its format, is installed once.
    """
    from kfp.local import logging_utils

    logger = logging.getLogger()
    swap, level, handlers = logging_utils.local_logger_context, logger.level, logger.handlers[:]
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging_utils.MillisecondFormatter(fmt="%(asctime)s - %(levelname)s - %(message)s", datefmt="%H:%M:%S.%f")
    )
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logging_utils.local_logger_context = contextlib.nullcontext
    try:
        yield
    finally:
        logging_utils.local_logger_context = swap
        logger.setLevel(level)
        logger.handlers[:] = handlers


#: Iterations of a loop (training runs) a local run executes at once. kfp.local runs a ``ParallelFor``'s
#: iterations in at most two worker threads, each task a Python subprocess: with two, one task's start-up
#: (Python, TensorFlow, MLflow imports, single-threaded) overlaps the other's training.
LOCAL_PARALLELISM = 2


@dataclass
class LocalRun:
    """Where a local run left its artifacts."""

    name: str
    folder: Path
    seconds: float
    run_id: str = ""


def run_local(
    name: str,
    params: Mapping[str, Any],
    pipeline_root: str | Path | None = None,
    settings: ClusterSettings | None = None,
    containers: bool = False,
    images: Mapping[str, str] | None = None,
) -> LocalRun:
    """Run ``name`` with kfp.local on this machine and return the run's artifact folder.

    Args:
        name: The pipeline.
        params: Its parameters.
        pipeline_root: The local artifact root (default ``<data dir>/pipelines``).
        settings: Cluster settings (default: no GPU, local parallelism).
        containers: Run every task in its component image with kfp's ``DockerRunner`` (see
            :func:`container_runner`) instead of as a subprocess of this Python.
        images: With ``containers``: default image -> the image to run (default
            :func:`local_container_images`).

    Raises:
        InputError: When the pipeline root is not a local folder, or containers have no MLflow server.
        LumbarError: When a task fails (the task's log is printed above the message).
    """
    from kfp import local

    from lumbar.tracking import tracking_uri

    root = Path(pipeline_root) if pipeline_root else data_dir() / "pipelines"
    if "://" in str(root):
        raise InputError(f"kfp.local needs a local pipeline root, not {root}")
    root = root.absolute()
    root.mkdir(parents=True, exist_ok=True)
    # the run id the training steps tag their MLflow runs with (kfp.run_id) and the report looks for: an
    # environment variable, as on a cluster, where it comes from the pod's label and not from a task input
    run_id = f"local-{uuid.uuid4().hex[:16]}"
    settings = settings or ClusterSettings(gpu=False, parallelism=LOCAL_PARALLELISM)
    if containers:
        return _run_and_find(name, *_in_containers(name, root, settings, images, run_id), params, root, run_id)
    # the task subprocesses inherit the environment: one data directory and one MLflow store for all
    env = {DATA_DIR_ENV: str(data_dir()), "MLFLOW_TRACKING_URI": tracking_uri(), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if env["MLFLOW_TRACKING_URI"].startswith("sqlite:"):
        # create the store's schema here, once: tasks running side by side each migrated a new SQLite
        # store and failed ("Online migration expected to match one row ... 0 found")
        from mlflow import MlflowClient

        Path(env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).search_experiments(max_results=1)
    pipeline = get(name, settings)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    context = _subprocess_tasks(env, run_id)  # entered by _run_and_find, inside its error handling
    return _run_and_find(name, pipeline, context, f"local run of {name}", params, root, run_id)


@contextmanager
def _subprocess_tasks(env: Mapping[str, str], run_id: str) -> Iterator[None]:
    """The task subprocesses' environment (``env`` where unset, and the run id) and their warm starts."""
    with _environment(env, {RUN_ID_ENV: run_id}), warm_tasks():
        yield


def _run_and_find(
    name: str,
    pipeline: Any,
    context: contextlib.AbstractContextManager,
    what: str,
    params: Mapping[str, Any],
    root: Path,
    run_id: str,
) -> LocalRun:
    """Run ``pipeline`` inside ``context`` (kfp.local already set up) and find the folder it wrote under ``root``."""
    before = set(root.iterdir())
    started = time.perf_counter()
    try:
        with context, one_logger_for_all_tasks(), warnings.catch_warnings():
            # resources and GPUs are cluster settings; locally they are expected no-ops
            warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
            pipeline(**params)
    except RuntimeError as exc:
        raise LumbarError(f"{what} failed: {str(exc).splitlines()[0]}") from None
    seconds = time.perf_counter() - started
    created = sorted(set(root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not created:
        raise LumbarError(f"{what} wrote nothing under {root}")
    return LocalRun(name, created[-1], seconds, run_id)


def local_container_images() -> dict[str, str]:
    """Default image -> the image a local container run uses: the CUDA training image's CPU variant.

    A machine without a GPU runs training in ``TRAIN_CPU_IMAGE`` (the layers of the component image),
    which ``make images`` builds; every other image is its default (locally built) name.
    """
    from components.images import TRAIN_CPU_IMAGE, TRAIN_IMAGE

    return {TRAIN_IMAGE: TRAIN_CPU_IMAGE}


def _container_keys() -> tuple[str, ...]:
    """The variables a task in a container takes from this process's environment.

    The keys a cluster gives every task through its config map and secrets, and the settings of a
    reproducible local run.
    """
    from pipelines.settings import CONFIG_KEYS, MLFLOW_KEYS, PSEUDONYM_KEY, S3_KEYS

    extra = ("SOURCE_DATE_EPOCH", "LUMBAR_S3_RETRY_SECONDS", "TF_CPP_MIN_LOG_LEVEL", "LUMBAR_DEBUG")
    return (*CONFIG_KEYS, *S3_KEYS, *MLFLOW_KEYS, PSEUDONYM_KEY, *extra)


def container_runner(run_id: str, environ: Mapping[str, str] | None = None) -> Any:
    """The ``kfp.local.DockerRunner`` of a local run in the component images.

    Each container runs as this process's ``uid:gid``, so it can write the bind-mounted pipeline root
    (host-owned) whatever user the image names (on a cluster the images run as their own non-root
    user); on the host's network, where the engine of ``make engine`` has no bridge and the local
    servers listen on loopback; with the cluster's task environment taken from ``environ``
    (:func:`_container_keys`), the run id, and ``HOME=/tmp`` (the uid may have no home in the image).

    Raises:
        InputError: When ``MLFLOW_TRACKING_URI`` is not an http(s) server (a container cannot reach this
            machine's SQLite file).
    """
    from kfp import local

    env = os.environ if environ is None else environ
    uri = env.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise InputError(
            "a run in containers logs to an MLflow server: set MLFLOW_TRACKING_URI to one "
            "(`lumbar services up` starts one on this machine)"
        )
    passed = {k: env[k] for k in _container_keys() if env.get(k)}
    passed.update({RUN_ID_ENV: run_id, "HOME": "/tmp"})
    return local.DockerRunner(user=f"{os.getuid()}:{os.getgid()}", network_mode="host", environment=passed)


def _in_containers(
    name: str, root: Path, settings: ClusterSettings, images: Mapping[str, str] | None, run_id: str
) -> tuple[Any, contextlib.AbstractContextManager, str]:
    """:func:`run_local` with ``containers``: the compiled pipeline with its images mapped, DockerRunner set up."""
    from kfp import components, local

    runner = container_runner(run_id)
    compiled = compile_pipeline(
        name,
        root / ".compiled" / f"{name}-{run_id}.yaml",
        settings,
        local_container_images() if images is None else images,
    )
    pipeline = components.load_component_from_file(str(compiled))
    local.init(runner=runner, pipeline_root=str(root), raise_on_error=True)
    return pipeline, contextlib.nullcontext(), f"run of {name} in containers"


def submit(
    name: str,
    host: str,
    params: Mapping[str, Any],
    experiment: str = "lumbar",
    settings: ClusterSettings | None = None,
    timeout: float = 10.0,
    wait: float = 0.0,
    namespace: str | None = None,
    check_version: bool = True,
    images: Mapping[str, str] | None = None,
) -> str:
    """Upload ``name`` to the Kubeflow Pipelines API at ``host``, start a run, and return its URL.

    The backend's version is read first (:func:`lumbar.kfp_backend.check_backend`): one older than
    :data:`lumbar.kfp_backend.MIN_KFP_VERSION` is refused before anything is uploaded.

    Args:
        name: Pipeline name.
        host: The API server's URL.
        params: Pipeline parameters.
        experiment: Kubeflow experiment.
        settings: Cluster settings to compile with.
        timeout: Seconds to wait for the host to answer.
        wait: When positive, wait up to this many seconds for the run to end, and fail unless it succeeded.
        namespace: The Kubeflow profile namespace to run in (multi-user Kubeflow); None for standalone KFP.
        check_version: Refuse a backend older than the minimum (off: submit to it anyway).
        images: Default image reference -> the reference to run (as for :func:`compile_pipeline`).

    Raises:
        SubmitError: When the host cannot be reached, refuses the request, is too old, or a waited-for run fails.
    """
    from lumbar.kfp_backend import BackendError, check_backend, credentials, healthz

    url = host.rstrip("/")
    try:  # a cheap check first: kfp.Client retries for minutes on a dead host
        creds = credentials()
        info = check_backend(url, creds, timeout=timeout) if check_version else healthz(url, creds.token, timeout)
    except BackendError as exc:
        raise SubmitError(str(exc)) from None
    if info.multi_user and not namespace:
        raise SubmitError(f"{url} is a multi-user Kubeflow; give --namespace (your profile namespace)")
    import kfp

    try:
        if creds.path:  # a ServiceAccount token file: kfp re-reads it, so a rotated token keeps working
            from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

            client = kfp.Client(host=url, credentials=ServiceAccountTokenVolumeCredentials(creds.path))
        else:
            client = kfp.Client(host=url, existing_token=creds.token)
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            package = compile_pipeline(name, Path(folder) / f"{name}.yaml", settings, images)
            run = client.create_run_from_pipeline_package(
                str(package),
                arguments=dict(params),
                run_name=f"{name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                experiment_name=experiment,
                namespace=namespace,
                enable_caching=None,
            )
    except Exception as exc:  # the API client raises many types (ApiException, MaxRetryError, ...)
        raise SubmitError(f"{url} did not accept the run of {name}: {str(exc).splitlines()[0]}") from None
    link = f"{url}/#/runs/details/{run.run_id}"
    if wait > 0:
        try:
            state = str(client.wait_for_run_completion(run.run_id, timeout=int(wait)).state)
        except Exception as exc:  # a timeout or a lost connection
            raise SubmitError(f"run {link} did not finish in {wait:.0f} s ({exc.__class__.__name__})") from None
        if state.upper() != "SUCCEEDED":
            raise SubmitError(f"run {link} ended {state}")
    return link
