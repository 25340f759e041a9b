"""Component: Grad-CAM page of the best configuration of a procedure."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def gradcam(
    models: Input[list[Model]],
    metrics: Input[list[Metrics]],
    dataset: Input[Dataset],
    page: Output[HTML],
    metric: str = "f1",
    images: int = 8,
):
    """Picks the best evaluated configuration by ``metric`` and explains its test predictions."""
    from lumbar.steps.gradcam import gradcam_best_step

    best = gradcam_best_step(
        models=[(m.path, m.metadata) for m in models],
        rows=[m.metadata for m in metrics],
        dataset=dataset.path,
        out_html=page.path,
        metric=metric,
        images=images,
    )
    page.metadata.update(best.metadata())
