"""Component: evaluate a trained model on the test split (Metrics, ClassificationMetrics, files)."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    files: Output[Artifact],
    split: str = "test",
):
    """Score the model on one split.

    Scalars go to ``metrics`` (with the configuration as metadata, for the compare step), the confusion
    matrix and ROC curve to ``classification``, and metrics.json and the plots to ``files``.
    """
    from lumbar.steps import evaluate_step

    result = evaluate_step(model.path, dataset.path, files.path, split)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    metrics.metadata.update(result.row)
    classification.log_confusion_matrix(result.classes, result.confusion)
    classification.log_roc_curve(result.fpr, result.tpr, result.thresholds)
