"""The ``gradcam`` step: the Grad-CAM page of a procedure's best evaluated configuration."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumbar.errors import InputError
from lumbar.steps.options import StepResult


@dataclass(frozen=True)
class GradcamPage(StepResult):
    """The configuration the page explains, the metric that chose it, and its value."""

    name: str
    metric: str
    value: float

    def metadata(self) -> dict[str, Any]:
        """``{"name": ..., <metric>: value}``."""
        return {"name": self.name, self.metric: self.value}


def gradcam_best_step(
    *,
    models: Sequence[tuple[str, Mapping[str, Any]]],
    rows: Sequence[Mapping[str, Any]],
    dataset: str | Path,
    out_html: str | Path,
    metric: str,
    images: int,
) -> GradcamPage:
    """Grad-CAM page of the best evaluated configuration, written as one self-contained HTML file.

    Args:
        models: ``(folder, metadata)`` of each trained model; matched to ``rows`` by configuration name.
        rows: Evaluation rows (:func:`lumbar.compare.evaluation_row`).
        dataset: Dataset C folder.
        out_html: The HTML file to write.
        metric: The metric that picks the best.
        images: Images on the page.

    Raises:
        InputError: When the best row has no model.
    """
    from lumbar.compare import best
    from lumbar.gradcam import gradcam_report

    top = rows[best(rows, metric)]
    folders = {str(meta.get("name")): folder for folder, meta in models}
    if top["name"] not in folders:
        raise InputError(f"no trained model is named {top['name']!r}; models: {', '.join(sorted(folders))}")
    with tempfile.TemporaryDirectory(prefix="lumbar-gradcam-") as scratch:
        page = gradcam_report(folders[top["name"]], dataset, scratch, n=images)
        Path(out_html).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, out_html)
    return GradcamPage(name=str(top["name"]), metric=metric, value=float(top[metric]))
