"""The ``compare`` step: a procedure's evaluated runs as Markdown tables in the layout of the paper's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def compare_step(
    *, procedure: str, rows: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]], data_origin: str
) -> str:
    """The Markdown comparison of a procedure's evaluated runs (see :func:`lumbar.compare.compare_markdown`).

    Args:
        procedure: ``procedure1``, ``procedure2`` or ``procedure3``.
        rows: The procedure's evaluation rows (:func:`lumbar.compare.evaluation_row`).
        baseline: Procedure 1's rows, which procedures 2 and 3 compare with (may be empty).
        data_origin: ``synthetic``, ``real`` or ``unknown``, said in each table's title.
    """
    from lumbar.compare import compare_markdown

    return compare_markdown(procedure, rows, baseline, origin=data_origin)
