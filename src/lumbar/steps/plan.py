"""The ``plan`` step: the configurations a procedure fans out over (backbones x modes x image types)."""

from __future__ import annotations

from dataclasses import dataclass

from lumbar.backbones import IMAGES, MODES, backbone_names
from lumbar.errors import InputError
from lumbar.steps.options import StepResult, split_list


@dataclass(frozen=True)
class PlannedConfig(StepResult):
    """One configuration of the fan-out."""

    backbone: str
    mode: str
    roi: bool


def _choose(text: str, what: str, choices: tuple[str, ...]) -> list[str]:
    chosen = split_list(text, what)
    unknown = [c for c in chosen if c not in choices]
    if unknown:
        raise InputError(f"unknown {what[:-1]} {unknown[0]!r}; {what} must be among {', '.join(choices)}")
    return chosen


def plan_step(*, backbones: str, modes: str, images: str) -> list[PlannedConfig]:
    """Every combination of the comma-separated backbones, modes and image types (``full``, ``roi``).

    Raises:
        InputError: For an unknown backbone, mode or image type, naming the choices.
    """
    return [
        PlannedConfig(backbone=b, mode=m, roi=i == "roi")
        for b in _choose(backbones, "backbones", backbone_names())
        for m in _choose(modes, "modes", MODES)
        for i in _choose(images, "images", IMAGES)
    ]
