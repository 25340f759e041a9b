"""Every profile's settings in one table: training, supervised pretraining and SimCLR.

A profile names a consistent set of defaults: ``paper`` follows the paper (Sections 3.5 and 3.6; where it
is vague, docs/training.md says which reading was taken), ``quick`` is sized for two CPU cores and
random-initialised backbones (why each of its settings: docs/training.md, "The quick profile").

Configurations (:class:`lumbar.train.TrainConfig`, :class:`lumbar.pretrain.SSLConfig`) are built from a
profile's section plus overrides and record the profile they came from; commands, components and
pipeline parameters leave a setting at "the profile's" (``None``, ``0`` or ``""``) instead of writing a
number of their own. This module imports nothing of the project: every layer may read it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from lumbar.errors import check_choice

PAPER = "paper"
QUICK = "quick"
#: The profile a command, component or pipeline uses when none is named.
DEFAULT_PROFILE = QUICK

#: The paper's input: 224-px images (its Dataset B shards and ImageNet's input too), in batches of 64.
PAPER_IMAGE_SIZE = 224
PAPER_BATCH_SIZE = 64
#: The quick profile's input size, the same for training and both pretrainings.
QUICK_IMAGE_SIZE = 64

#: The sections of a profile: ``train`` (:class:`lumbar.train.TrainConfig`; epochs and learning rate per
#: mode), ``pretrain`` (supervised pretraining from scratch on Dataset A, procedure 2) and ``ssl`` (SimCLR
#: on Dataset B, procedure 3).
SECTIONS = ("train", "pretrain", "ssl")

_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    PAPER: {
        "train": {
            "image_size": PAPER_IMAGE_SIZE,
            "batch_size": PAPER_BATCH_SIZE,
            "epochs_frozen": 50,
            "epochs_finetune": 50,
            "lr_frozen": 1e-3,
            "lr_finetune": 1e-5,
            "unfreeze": "blocks:2",
            "monitor": "val_error",
            "class_weights": "none",
            "augment": True,
            "standardize": False,
            "probe_epochs": 0,
            "head_l2": 0.0,
        },
        # "learning rate 1e-5, batch size = 64, number of epochs = 100" (Section 3.6.2)
        "pretrain": {
            "image_size": PAPER_IMAGE_SIZE,
            "batch_size": PAPER_BATCH_SIZE,
            "epochs": 100,
            "learning_rate": 1e-5,
            "augment": True,
        },
        "ssl": {"image_size": PAPER_IMAGE_SIZE, "batch_size": PAPER_BATCH_SIZE, "epochs": 100, "learning_rate": 1e-5},
    },
    QUICK: {
        "train": {
            "image_size": QUICK_IMAGE_SIZE,
            "batch_size": 16,
            # a frozen probe fits its head on features computed once, so its epochs cost almost nothing;
            # 60 let the linear head converge
            "epochs_frozen": 60,
            "epochs_finetune": 6,
            "lr_frozen": 1e-3,
            "lr_finetune": 1e-5,
            "unfreeze": "blocks:1",
            "monitor": "val_error",
            "class_weights": "none",  # unweighted, as the paper
            "augment": False,
            "standardize": True,
            # fine-tuning starts from a head fitted on the frozen features (a linear probe first): from a
            # random head, 6 epochs at 1e-5 barely move it
            "probe_epochs": 30,
            # a linear head on hundreds of features fitted to ~80 training discs, kept to small weights
            "head_l2": 0.5,
        },
        "pretrain": {
            "image_size": QUICK_IMAGE_SIZE,
            "batch_size": 16,
            "epochs": 4,
            "learning_rate": 1e-4,
            "augment": False,
        },
        # Adam at 1e-4 and above stalled VGG16 from random weights at chance loss here; 1e-5 learns
        "ssl": {"image_size": QUICK_IMAGE_SIZE, "batch_size": 32, "epochs": 3, "learning_rate": 1e-5},
    },
}

#: Read-only view of the table: ``PROFILES[profile][section][setting]``.
PROFILES = MappingProxyType(
    {
        name: MappingProxyType({section: MappingProxyType(values) for section, values in sections.items()})
        for name, sections in _PROFILES.items()
    }
)
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)


def profile_settings(profile: str, section: str) -> dict[str, Any]:
    """A copy of one section of a profile.

    Raises:
        InputError: For an unknown profile or section.
    """
    check_choice("profile", profile, PROFILE_NAMES)
    check_choice("profile section", section, SECTIONS)
    return dict(_PROFILES[profile][section])
