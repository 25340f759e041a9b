"""lumbar: disc-state classification of lumbar-spine MRI, from a PACS DICOM export to tracked models.

The package is the domain library. It never imports ``kfp``; Kubeflow components in ``components/``
are thin wrappers around its functions. Importing it has no side effects and loads no heavy library.

Layer order, bottom to top (a module imports only from its own layer and those below; no import cycles;
``tests/test_layers.py`` checks every import, also those inside functions):

0. foundation: errors, paths, the registries (``backbones``, ``metrics``, ``procedures``), every profile's
   settings (``profiles``), the paper's numbers (``paper``), small pure helpers (``selection``, ``split``,
   ``roi``, ``progress``, ``limits``);
1. data and models: DICOM, de-identification, labels, the dataset builders (``spider`` among them),
   storage, versions, tracking, services, ``models``;
2. training and evaluation: ``train``, ``evaluate``, ``pretrain``, ``gradcam``, ``baselines``;
3. results: ``compare``, ``report``;
4. ``steps``, the adapters the components call;
5. ``cli``; outside the package, above it: ``components/``, ``pipelines/``, ``launch/``.
"""

__version__ = "0.1.0"
