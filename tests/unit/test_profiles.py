"""Every setting has one source, lumbar.profiles: the CLI and the pipeline steps build the same configurations
from it, and no profile value is written as a literal default anywhere else."""

from __future__ import annotations

import ast
import inspect
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from lumbar.profiles import DEFAULT_PROFILE, PAPER_IMAGE_SIZE, PROFILE_NAMES, PROFILES, SECTIONS, profile_settings
from lumbar.steps.options import CLI_UNSET, PIPELINE_UNSET, config_from_profile

REPO = Path(__file__).resolve().parents[2]
#: Where defaults are written: the library, the components, the pipelines and the launchers.
SOURCES = ("src/lumbar", "components", "pipelines", "launch")
#: Parameter and field names that carry a profile's value.
PROFILE_SHAPED = {
    "profile", "image_size", "batch_size", "epochs", "learning_rate", "lr", "epochs_frozen", "epochs_finetune",
    "probe_epochs", "head_l2", "shard_image_size", "supervised_epochs", "ssl_epochs",
}  # fmt: skip
#: A component's function source is copied into its container without its module's imports, so its defaults
#: must be literals: each is listed here with the value of the source it must equal.
COMPONENT_LITERALS: dict[tuple[str, str], Any] = {("components/build_dataset_b.py", "image_size"): PAPER_IMAGE_SIZE}


def _defaults(function: Any) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


def test_the_table_has_every_section_of_every_profile_and_is_read_only():
    assert DEFAULT_PROFILE in PROFILE_NAMES
    for name in PROFILE_NAMES:
        assert set(PROFILES[name]) == set(SECTIONS)
    with pytest.raises(TypeError):
        PROFILES["quick"]["train"]["image_size"] = 1  # type: ignore[index]
    copy = profile_settings("quick", "train")
    copy["image_size"] = 1
    assert profile_settings("quick", "train")["image_size"] != 1


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_training_is_configured_alike_from_the_cli_and_from_the_pipeline(profile, mode):
    from components.train import train as component
    from lumbar.cli.train import train as command
    from lumbar.train import TrainConfig

    given = {"backbone": "vgg16", "mode": mode, "roi": True, "profile": profile}
    cli = config_from_profile(TrainConfig, profile, {**_defaults(command), **given}, CLI_UNSET)
    step = config_from_profile(TrainConfig, profile, {**_defaults(component.python_func), **given}, PIPELINE_UNSET)
    assert asdict(cli) == asdict(step)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@pytest.mark.parametrize("method", ["supervised", "ssl"])
def test_pretraining_is_configured_alike_from_the_cli_and_from_the_pipeline(profile, method):
    from components.pretrain_ssl import pretrain_ssl
    from components.pretrain_supervised import pretrain_supervised
    from lumbar.cli import pretrain as commands
    from lumbar.steps.pretrain import pretrain_config

    command = commands.supervised if method == "supervised" else commands.ssl
    component = pretrain_supervised if method == "supervised" else pretrain_ssl
    given = {"backbone": "vgg16", "profile": profile}
    cli = pretrain_config(method, profile, {**_defaults(command), **given}, CLI_UNSET)
    step = pretrain_config(method, profile, {**_defaults(component.python_func), **given}, PIPELINE_UNSET)
    assert asdict(cli) == asdict(step)
    if method == "supervised":  # the pipeline's value stands where the two disagreed: no augmentation in quick
        assert cli.augment is profile_settings(profile, "pretrain")["augment"]


def test_an_unnamed_profile_is_the_default_one_everywhere():
    from components.train import train as component
    from lumbar.cli.train import train as command
    from pipelines.parameters import PARAMETERS

    assert _defaults(command)["profile"] == DEFAULT_PROFILE == PARAMETERS["profile"].default
    assert _defaults(component.python_func)["profile"] == ""  # the step reads "" as DEFAULT_PROFILE


def _literal_defaults(path: Path) -> list[tuple[int, str, Any]]:
    """``(line, name, value)`` of every literal default of a profile-shaped parameter or field in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        pairs: list[tuple[ast.arg | ast.Name, ast.expr]] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs += list(zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
        elif isinstance(node, ast.ClassDef):
            pairs += [
                (s.target, s.value)
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None
            ]
        for target, value in pairs:
            name = target.arg if isinstance(target, ast.arg) else target.id
            unset = isinstance(value, ast.Constant) and value.value in (None, 0, "", False, ...)
            if name in PROFILE_SHAPED and isinstance(value, ast.Constant) and not unset:
                found.append((value.lineno, name, value.value))
        if isinstance(node, ast.Constant) and node.value in PROFILE_NAMES and node.value == "quick":
            found.append((node.lineno, "a profile name", node.value))
    return found


def test_no_profile_value_is_a_literal_default_outside_the_profiles():
    """Image sizes, batch sizes, epochs, learning rates and profile names come from lumbar.profiles."""
    offences = []
    for root in SOURCES:
        for path in sorted((REPO / root).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative == "src/lumbar/profiles.py":
                continue
            for line, name, value in _literal_defaults(path):
                if COMPONENT_LITERALS.get((relative, name), object()) == value:
                    continue
                offences.append(f"{relative}:{line}: {name} = {value!r}")
    assert not offences, "write these from lumbar.profiles:\n" + "\n".join(offences)
