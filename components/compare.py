"""Component: a procedure's runs as Markdown tables in the layout of the paper's tables."""

from kfp import dsl
from kfp.dsl import Input, Markdown, Metrics, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def compare(
    procedure: str,
    metrics: Input[list[Metrics]],
    table: Output[Markdown],
    more: Input[list[Metrics]] | None = None,
    baseline: Input[list[Metrics]] | None = None,
    data_origin: str = "unknown",
):
    """Tabulate a procedure's runs, read from the evaluate steps' Metrics metadata, beside the paper's numbers.

    kfp.local keeps metrics nowhere else. ``more`` adds a second fan-out's runs, ``baseline`` the
    procedure 1 runs procedures 2 and 3 compare with; ``data_origin`` (synthetic, real, unknown) labels ours.
    """
    from pathlib import Path

    from lumbar.steps.compare import compare_step

    rows = [m.metadata for m in [*metrics, *(more or [])]]
    text = compare_step(
        procedure=procedure,
        rows=rows,
        baseline=[m.metadata for m in baseline or []],
        data_origin=data_origin,
    )
    Path(table.path).write_text(text)
