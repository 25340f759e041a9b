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
    from lumbar.steps import gradcam_best_step

    info = gradcam_best_step(
        [(m.path, m.metadata) for m in models], [m.metadata for m in metrics], dataset.path, page.path, metric, images
    )
    page.metadata.update(info)
