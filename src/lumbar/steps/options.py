"""What every step shares: results as flat metadata, tracking, comma lists, and configs from a profile.

:func:`config_from_profile` is the one way the CLI and the steps turn their options into a training or
pretraining config: an option that is *unset* keeps the profile's value. The CLI's unset value is ``None``;
a pipeline parameter's is also ``0`` or ``""`` (:data:`PIPELINE_UNSET`), as pipeline parameters are flat
primitives without a None.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, TypeVar

from lumbar.errors import InputError
from lumbar.procedures import experiment_name

#: The values that leave a config field at the profile's value: the CLI's.
CLI_UNSET: tuple[Any, ...] = (None,)
#: The values that leave a config field at the profile's value: a pipeline parameter's.
PIPELINE_UNSET: tuple[Any, ...] = (None, 0, "")


class _FromProfile(Protocol):
    @classmethod
    def from_profile(cls, profile: str = ..., **overrides: Any) -> Any: ...


C = TypeVar("C", bound=_FromProfile)
T = TypeVar("T")


@dataclass(frozen=True)
class StepResult:
    """Base of every step's result: its fields are the output artifact's flat metadata."""

    def metadata(self) -> dict[str, Any]:
        """The fields as artifact metadata (``None`` fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def _unset(value: Any, unset: tuple[Any, ...]) -> bool:
    if isinstance(value, bool):  # False == 0, but a flag is always set
        return False
    return any(value is u or (u is not None and value == u) for u in unset)


def config_from_options(config: type[T], options: Mapping[str, Any]) -> T:
    """The dataclass ``config`` built from the options named like its fields (a command's parameters by name).

    Fields no option names keep their defaults; options that name no field are ignored.

    Raises:
        InputError: For an invalid value (from the config's validation).
    """
    names = {f.name for f in fields(config)}  # type: ignore[arg-type]  # a dataclass
    return config(**{k: v for k, v in options.items() if k in names})


def profile_options(config: type, options: Mapping[str, Any], unset: tuple[Any, ...] = CLI_UNSET) -> dict[str, Any]:
    """The options that set a field of the dataclass ``config``, the unset ones left out.

    Args:
        config: A config dataclass (:class:`lumbar.train.TrainConfig`, :class:`lumbar.pretrain.SSLConfig`).
        options: A command's or step's parameters by name; names that are no field of ``config`` are ignored.
        unset: The values that mean "the profile's" (:data:`CLI_UNSET` or :data:`PIPELINE_UNSET`).
    """
    names = {f.name for f in fields(config)} - {"profile"}
    return {k: v for k, v in options.items() if k in names and not _unset(v, unset)}


def config_from_profile(
    config: type[C], profile: str, options: Mapping[str, Any], unset: tuple[Any, ...] = CLI_UNSET
) -> C:
    """``config.from_profile(profile, ...)`` with the options that set one of its fields (:func:`profile_options`).

    Raises:
        InputError: For an unknown profile or an invalid value (from the config).
    """
    return config.from_profile(profile, **profile_options(config, options, unset))


def tracking_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Steps log to MLflow only when ``MLFLOW_TRACKING_URI`` is set."""
    env = os.environ if environ is None else environ
    return bool(env.get("MLFLOW_TRACKING_URI"))


def tracking_options(procedure: str, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``track``, ``experiment`` and ``tags`` for a training function, as a pipeline step tracks it.

    The run is tracked when :func:`tracking_enabled`, in the procedure's experiment (``lumbar-<procedure>``),
    tagged with ``tags``; the training functions add the Kubeflow run id from the environment
    (:func:`lumbar.tracking.standard_tags`), which is not a task input so that cached training can hit.
    """
    return {"track": tracking_enabled(), "experiment": experiment_name(procedure), "tags": dict(tags or {})}


def split_list(text: str, what: str) -> list[str]:
    """Split a comma-separated pipeline parameter into its non-empty items.

    Raises:
        InputError: When nothing is left.
    """
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise InputError(f"{what} is empty; give a comma-separated list")
    return items
