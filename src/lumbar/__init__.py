"""lumbar: disc-state classification of lumbar-spine MRI, from a PACS DICOM export to tracked models.

The package is the domain library. It never imports ``kfp``; Kubeflow components in ``components/``
are thin wrappers around its functions. Importing it has no side effects and loads no heavy library.
"""

__version__ = "0.1.0"
