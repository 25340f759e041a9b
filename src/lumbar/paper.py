"""The paper's own numbers (``paper_values.json``), kept to compare with ours, and checks of its arithmetic."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from lumbar.evaluate import improvement_rate


@cache
def _load() -> dict[str, Any]:
    return json.loads(resources.files("lumbar").joinpath("paper_values.json").read_text(encoding="utf-8"))


class _Paper:
    """Read-only view of ``paper_values.json`` (loaded on first use)."""

    def __getitem__(self, key: str) -> Any:
        return _load()[key]


PAPER = _Paper()


def paper_value(
    table: str, backbone: str, roi: bool, metric: str = "accuracy", mode: str | None = None
) -> float | None:
    """The paper's value of one cell, or None when it is not available to this project."""
    for cell in PAPER["cells"]:
        if (cell["table"], cell["backbone"], cell["roi"], cell["metric"], cell["mode"]) == (
            table,
            backbone,
            roi,
            metric,
            mode,
        ):
            return cell["value"]
    return None


def improvement_check() -> list[dict[str, Any]]:
    """Recompute Table 10's ROI improvement rates with Equation 8 from the paper's own accuracies.

    Returns:
        One entry per backbone: the printed rate, the recomputed rate (None when the paper's accuracies
        are not available), and whether the printed rate is the recomputed one rounded (None when unknown).
    """
    checks = []
    for backbone, printed in PAPER["table10_printed_rates"].items():
        old, new = paper_value("10", backbone, False), paper_value("10", backbone, True)
        computed = improvement_rate(new, old) if old is not None and new is not None else None
        checks.append(
            {
                "backbone": backbone,
                "printed": printed,
                "computed": computed,
                "consistent": None if computed is None else round(computed) == printed,
            }
        )
    return checks
