"""Component: pin a dataset reference (``.../latest``) to its immutable version, before any cached step sees it."""

from typing import NamedTuple

from kfp import dsl

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def resolve_dataset(uri: str) -> NamedTuple("Pinned", uri=str, version=str):
    """The version's own URI and id (a folder: its path and content hash); never cached, it reads a pointer."""
    from collections import namedtuple

    from lumbar.versions import pin

    pinned_uri, version = pin(uri)
    return namedtuple("Pinned", ["uri", "version"])(pinned_uri, version)
