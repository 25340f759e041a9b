"""Kubeflow Pipelines components of lumbar: one thin typed wrapper per file around one ``lumbar.steps`` function."""
