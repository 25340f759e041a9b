"""The ``report`` step: the results report of a pipeline run (the paper's tables and plots, from MLflow)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lumbar.steps.options import StepResult


@dataclass(frozen=True)
class ReportWritten(StepResult):
    """How many MLflow runs of each procedure the report holds."""

    runs: dict[str, int] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """``<procedure>_runs`` for each procedure."""
        return {f"{procedure}_runs": n for procedure, n in self.runs.items()}


def report_step(
    *,
    page: str | Path,
    summary: str | Path,
    experiment_prefix: str,
    kfp_run_id: str,
    data_origin: str,
    mlflow_ui: str,
    dataset: str | Path,
) -> ReportWritten:
    """Build the results report and write its HTML page and Markdown summary to the given files.

    Args:
        page: The HTML file to write.
        summary: The Markdown file to write.
        experiment_prefix: The experiments read are ``<prefix>-procedure1`` ...
        kfp_run_id: The Kubeflow run to report (empty: each procedure's latest); ``$LUMBAR_KFP_RUN_ID``
            wins when set, the id the training steps of the same run tagged their runs with.
        data_origin: ``synthetic``, ``real`` or ``unknown``.
        mlflow_ui: The MLflow UI address the report links to.
        dataset: Dataset C folder, for the Grad-CAM section (empty: none).
    """
    from lumbar.report import ReportConfig, build_report
    from lumbar.tracking import kfp_run_id as run_in_environment

    kfp_run_id = run_in_environment() or kfp_run_id

    with tempfile.TemporaryDirectory(prefix="lumbar-report-") as scratch:
        config = ReportConfig(
            out=Path(scratch),
            experiment_prefix=experiment_prefix,
            kfp_run_id=kfp_run_id or None,
            mlflow_ui=mlflow_ui,
            data_origin=data_origin,
            dataset=str(dataset) if dataset else None,
        )
        result = build_report(config)
        for source, target in ((result.html, page), (result.markdown, summary)):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return ReportWritten(runs={procedure: len(runs) for procedure, runs in result.runs.items()})
