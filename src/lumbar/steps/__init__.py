"""One adapter per Kubeflow component: what a component calls, in plain Python (this package never imports kfp).

Each module holds the step of one component (``components/<name>.py`` calls ``lumbar.steps.<name>``; the two
pretraining components share :mod:`lumbar.steps.pretrain`). A step takes keyword-only arguments without defaults,
the component's parameters with its artifacts as paths (so the component's signature is the one place
that sets a default), and returns a frozen dataclass whose
:meth:`~lumbar.steps.options.StepResult.metadata` is what the component writes into its output artifact.
The conventions every step shares are in :mod:`lumbar.steps.options`:

* a pipeline parameter of ``0`` or ``""`` means "the profile's value" (pipeline parameters are flat
  primitives); the CLI's ``None`` means the same, and both build their configs through
  :func:`~lumbar.steps.options.config_from_profile`;
* tracking is on when ``MLFLOW_TRACKING_URI`` is set, and a step that logs to MLflow is given the Kubeflow
  run id and its procedure explicitly (the run is tagged ``kfp.run_id``; the experiment is ``lumbar-<procedure>``);
* inputs given as URIs are staged by :func:`lumbar.storage.stage_folder` / :func:`lumbar.storage.stage_file`.
"""
