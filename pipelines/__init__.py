"""Kubeflow pipelines of lumbar: one file per pipeline; bodies only wire components together."""
