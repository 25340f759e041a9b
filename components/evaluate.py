"""Component: evaluate a trained model on the test split (Metrics, one ClassificationMetrics per view, files)."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    abnormal_positive: Output[ClassificationMetrics],
    normal_positive: Output[ClassificationMetrics],
    files: Output[Artifact],
    split: str = "test",
    positive: str = "abnormal",
):
    """Score the model on one split, in both positive views.

    Scalars of both views go to ``metrics`` (``normal_f1``, ``abnormal_f1``, ...; ``positive`` chooses the
    view under the plain names), with the configuration as metadata for the compare step. Each
    ``*_positive`` artifact holds the confusion matrix, labelled with the class names, and that view's ROC
    curve; metrics.json and the plots go to ``files``.
    """
    from lumbar.steps.evaluate import evaluate_step

    result = evaluate_step(model=model.path, dataset=dataset.path, out=files.path, split=split, positive=positive)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    metrics.metadata.update(result.row)
    for view, artifact in (("abnormal", abnormal_positive), ("normal", normal_positive)):
        artifact.log_confusion_matrix(result.classes, result.confusion)
        artifact.log_roc_curve(*result.roc[view])
