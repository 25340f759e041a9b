"""Kubeflow Pipelines components of lumbar: one thin typed wrapper per file around its ``lumbar.steps.<name>`` step."""
