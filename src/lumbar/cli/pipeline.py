"""``lumbar pipeline list | compile | run | submit``: the Kubeflow pipelines in ``pipelines/``.

The pipeline definitions (and kfp) are imported inside the commands only; the library never imports kfp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors

app = typer.Typer(help="Compile, run locally, or submit the Kubeflow pipelines.", no_args_is_help=True)

_NAME = Annotated[str, typer.Argument(help="dataset_c | procedure1 | procedure2 | procedure3 | paper")]
_PARAMS = Annotated[list[str] | None, typer.Argument(help="Pipeline parameters as KEY=VALUE.", show_default=False)]


def _settings(
    gpu: bool = True,
    node_selector: str | None = None,
    toleration: str | None = None,
    parallelism: int | None = None,
    cache_training: bool = False,
    gpus: int = 1,
):  # type: ignore[no-untyped-def]
    from lumbar.errors import InputError
    from pipelines.settings import ClusterSettings

    values: dict = {"gpu": gpu, "cache_training": cache_training, "gpus": gpus}
    if node_selector:
        key, sep, value = node_selector.partition("=")
        if not sep or not key or not value:
            raise InputError(f"--gpu-node-selector {node_selector!r} must be LABEL=VALUE")
        values["node_selector"] = (key, value)
    if toleration:
        key, sep, effect = toleration.partition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise InputError(f"--gpu-toleration {toleration!r} must be KEY:NoSchedule|PreferNoSchedule|NoExecute")
        values["toleration"] = (key, effect)
    if parallelism is not None:  # ClusterSettings checks the numbers
        values["parallelism"] = parallelism
    elif not gpu:
        from pipelines.settings import NO_GPU_PARALLELISM

        values["parallelism"] = NO_GPU_PARALLELISM  # a CPU-only (laptop) cluster: one iteration at a time
    return ClusterSettings(**values)


_REGISTRY = Annotated[
    str | None,
    typer.Option(
        "--image-registry",
        envvar="LUMBAR_IMAGE_REGISTRY",
        help="Registry the images were pushed to (default: none, the locally built names; the lock file wins).",
    ),
]
_LOCK = Annotated[
    Path | None,
    typer.Option(
        "--images-lock", help="Image lock file of make images/push (default ./images.lock.json when present)."
    ),
]


def _images(registry: str | None, lock: Path | None, gpu: bool = True) -> dict[str, str]:
    """The compiled pipelines' images (without GPUs the training tasks run the training image's CPU variant)."""
    from components.images import LOCK_FILE, TRAIN_CPU_IMAGE, TRAIN_IMAGE, compiled_images
    from lumbar.errors import InputError

    if lock is not None and not lock.is_file():
        raise InputError(f"--images-lock {lock} does not exist")
    if lock is None and Path(LOCK_FILE).is_file():
        lock = Path(LOCK_FILE)
    mapping = compiled_images(registry, lock)
    if not gpu:
        mapping[TRAIN_IMAGE] = mapping[TRAIN_CPU_IMAGE]
    return mapping


def _say_if_local(images: dict[str, str]) -> None:
    """One line on stderr when the compiled images are local names that no cluster can pull."""
    from components.images import local_note

    note = local_note(images)
    if note:
        typer.echo(note, err=True)


@app.command("list")
def pipeline_list() -> None:
    """The pipelines and their parameters."""
    from rich.console import Console
    from rich.table import Table

    from launch.launcher import PIPELINES, describe

    table = Table(title="lumbar pipelines")
    for column in ("name", "description", "parameters (required first)"):
        table.add_column(column)
    for name in PIPELINES:
        info = describe(name)
        params = sorted(info["parameters"].items(), key=lambda kv: not kv[1]["required"])
        text = ", ".join(k + ("*" if v["required"] else f"={v['default']}") for k, v in params)
        table.add_row(name, info["description"], text)
    Console(width=160).print(table)


@app.command("compile")
def pipeline_compile(
    name: _NAME,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="IR YAML file (default: NAME.yaml).")] = None,
    gpu: Annotated[bool, typer.Option("--gpu/--no-gpu", help="Training tasks ask for a GPU.")] = True,
    gpu_node_selector: Annotated[
        str | None, typer.Option(help="LABEL=VALUE of GPU nodes (default nvidia.com/gpu.present=true).")
    ] = None,
    gpu_toleration: Annotated[
        str | None, typer.Option(help="KEY:EFFECT of the GPU taint (default nvidia.com/gpu:NoSchedule).")
    ] = None,
    parallelism: Annotated[int | None, typer.Option(help="Training runs of a fan-out at once (default 4).")] = None,
    cache_training: Annotated[bool, typer.Option(help="Let Kubeflow reuse cached training results.")] = False,
    gpus: Annotated[int, typer.Option(help="GPUs per training task, trained data-parallel (with --gpu).")] = 1,
    image_registry: _REGISTRY = None,
    images_lock: _LOCK = None,
) -> None:
    """Compile a pipeline to Kubeflow Pipelines IR YAML."""
    from launch.launcher import compile_pipeline

    with clear_errors():
        settings = _settings(gpu, gpu_node_selector, gpu_toleration, parallelism, cache_training, gpus)
        images = _images(image_registry, images_lock, gpu)
        path = compile_pipeline(name, output or Path(f"{name}.yaml"), settings, images)
    typer.echo(f"compiled {name} to {path}")
    _say_if_local(images)


@app.command("run")
def pipeline_run(
    name: _NAME,
    params: _PARAMS = None,
    local: Annotated[bool, typer.Option("--local", help="Run on this machine with kfp.local (required).")] = False,
    pipeline_root: Annotated[
        Path | None, typer.Option(help="Local artifact root (default: <data dir>/pipelines).")
    ] = None,
    parallelism: Annotated[int, typer.Option(help="Training runs at once (kfp.local allows at most 2).")] = 1,
    containers: Annotated[
        bool,
        typer.Option(
            "--containers",
            help="Run each task in its component image on the Docker engine (make images), not as a subprocess.",
        ),
    ] = False,
) -> None:
    """Run a pipeline locally with kfp.local (each task a subprocess of this Python, or a container)."""
    from launch.launcher import parse_params, run_local
    from lumbar.errors import InputError

    with clear_errors():
        if not local:
            raise InputError("only --local runs are supported here; use `lumbar pipeline submit` for a cluster")
        values = parse_params(name, params or [])
        settings = _settings(gpu=False, parallelism=parallelism)
        result = run_local(name, values, pipeline_root, settings, containers=containers)
    typer.echo(f"{name} finished in {result.seconds:.1f} s; artifacts in {result.folder}")


@app.command("submit")
def pipeline_submit(
    name: _NAME,
    host: Annotated[str, typer.Option("--host", help="Kubeflow Pipelines API URL, e.g. http://localhost:8080.")],
    params: _PARAMS = None,
    experiment: Annotated[str, typer.Option(help="Kubeflow experiment.")] = "lumbar",
    gpu: Annotated[bool, typer.Option("--gpu/--no-gpu", help="Training tasks ask for a GPU.")] = True,
    gpu_node_selector: Annotated[str | None, typer.Option(help="LABEL=VALUE of GPU nodes.")] = None,
    gpu_toleration: Annotated[str | None, typer.Option(help="KEY:EFFECT of the GPU taint.")] = None,
    parallelism: Annotated[int | None, typer.Option(help="Training runs of a fan-out at once (default 4).")] = None,
    wait: Annotated[float, typer.Option(help="Wait up to this many seconds for the run; fail unless it succeeds.")] = 0,
    gpus: Annotated[int, typer.Option(help="GPUs per training task, trained data-parallel (with --gpu).")] = 1,
    namespace: Annotated[
        str | None, typer.Option(help="Kubeflow profile namespace to run in (multi-user Kubeflow).")
    ] = None,
    skip_version_check: Annotated[
        bool, typer.Option(help="Submit even to a backend older than the minimum KFP version.")
    ] = False,
    image_registry: _REGISTRY = None,
    images_lock: _LOCK = None,
) -> None:
    """Compile a pipeline, upload it to a Kubeflow Pipelines server, start a run, print its URL.

    Credentials: $LUMBAR_KFP_TOKEN (a bearer token), else the ServiceAccount token file at
    $KF_PIPELINES_SA_TOKEN_PATH (or Kubeflow's projected token inside a pod), else none (port-forward).
    """
    from launch.launcher import parse_params, submit

    with clear_errors():
        values = parse_params(name, params or [])
        settings = _settings(gpu, gpu_node_selector, gpu_toleration, parallelism, gpus=gpus)
        images = _images(image_registry, images_lock, gpu)
        url = submit(
            name,
            host,
            values,
            experiment,
            settings,
            wait=wait,
            namespace=namespace,
            check_version=not skip_version_check,
            images=images,
        )
    typer.echo(f"submitted {name}: {url}")
    _say_if_local(images)
