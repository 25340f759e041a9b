"""``lumbar cluster check``: the cluster has what the pipelines read, before their first run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors

app = typer.Typer(help="Check a Kubernetes cluster before running the pipelines on it.", no_args_is_help=True)


@app.command("check")
def cluster_check(
    namespace: Annotated[
        str, typer.Option(help="Namespace the pipeline pods run in (multi-user Kubeflow: your profile).")
    ] = "kubeflow",
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Kubeconfig file (default: in-cluster, then ~/.kube).")
    ] = None,
    context: Annotated[str | None, typer.Option(help="Kubeconfig context.")] = None,
    kfp_host: Annotated[
        str | None, typer.Option(help="KFP API URL (default: the ml-pipeline service through the API server).")
    ] = None,
    kfp_namespace: Annotated[str, typer.Option(help="Namespace of the ml-pipeline service.")] = "kubeflow",
    gpu: Annotated[bool, typer.Option("--gpu/--no-gpu", help="Training asks for GPUs (check a GPU node).")] = True,
    gpu_node_selector: Annotated[str | None, typer.Option(help="LABEL=VALUE of GPU nodes.")] = None,
    gpu_toleration: Annotated[str | None, typer.Option(help="KEY:EFFECT of the GPU taint.")] = None,
    in_cluster_probe: Annotated[
        bool, typer.Option(help="Run a short Job that reaches the object store and MLflow from inside.")
    ] = False,
    image_registry: Annotated[
        str | None, typer.Option("--image-registry", envvar="LUMBAR_IMAGE_REGISTRY", help="Registry of the images.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer (the probe: 12x).")] = 10.0,
) -> None:
    """Check the namespace, config map, secrets, GPU nodes and KFP version; exit 2 if any check fails."""
    from rich.console import Console
    from rich.table import Table

    from lumbar.cli.pipeline import _images, _settings
    from lumbar.cluster import Probe, Requirements, api_client, run_checks
    from lumbar.kfp_backend import credentials
    from pipelines.settings import cluster_references

    with clear_errors():
        settings = _settings(gpu, gpu_node_selector, gpu_toleration)
        config_map, config_keys, secrets = cluster_references(settings)
        req = Requirements(
            namespace=namespace,
            config_map=config_map,
            config_keys=config_keys,
            secrets=tuple(secrets.items()),
            gpu=gpu,
            node_selector=settings.node_selector,
            toleration=settings.toleration,
            accelerator=settings.accelerator,
            kfp_url=kfp_host,
            kfp_namespace=kfp_namespace,
        )
        probe = None
        if in_cluster_probe:
            from components.images import BASE_IMAGE

            probe = Probe(image=_images(image_registry, None)[BASE_IMAGE], timeout=12 * timeout)
        client = api_client(str(kubeconfig) if kubeconfig else None, context)
        checks = run_checks(client, req, credentials() if kfp_host else None, probe, timeout)
    table = Table(title=f"lumbar cluster check (namespace {namespace})")
    for column in ("", "check", "found", "fix"):
        table.add_column(column)
    for check in checks:
        mark = "[green]✓[/green]" if check.ok else "[red]✗[/red]"
        table.add_row(mark, check.name, check.detail, "" if check.ok else check.fix)
    Console(width=200).print(table)
    failed = [c for c in checks if not c.ok]
    if failed:
        typer.echo(f"error: {len(failed)} of {len(checks)} checks failed", err=True)
        raise typer.Exit(2)
    typer.echo(f"all {len(checks)} checks passed")
