"""Component: the results report of a pipeline run (the paper's tables and plots, from MLflow)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def report(
    page: Output[HTML],
    summary: Output[Markdown],
    experiment_prefix: str = "lumbar",
    kfp_run_id: str = "",
    data_origin: str = "unknown",
    mlflow_ui: str = "http://127.0.0.1:5000",
    dataset: Input[Dataset] | None = None,
):
    """Reads this Kubeflow run's training runs from MLflow (``MLFLOW_TRACKING_URI``); Grad-CAM needs ``dataset``.

    The tables stand beside the paper's numbers in its positive class (normal); ``data_origin`` labels ours.
    """
    from lumbar.steps.report import report_step

    written = report_step(
        page=page.path,
        summary=summary.path,
        experiment_prefix=experiment_prefix,
        kfp_run_id=kfp_run_id,
        data_origin=data_origin,
        mlflow_ui=mlflow_ui,
        dataset=dataset.path if dataset else "",
    )
    page.metadata.update(written.metadata())
