"""One registry per kind of thing: a backbone or a procedure registered once shows everywhere, with no other edit."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lumbar import backbones
from lumbar.backbones import BACKBONES, BackboneSpec, backbone_names, register_backbone
from lumbar.compare import PRETRAINING_TABLES, procedure1_tables
from lumbar.errors import InputError
from lumbar.procedures import PROCEDURES, experiment_name, procedure, procedure_of_source


def _tiny(include_top, weights, input_tensor):
    """A two-block convolutional backbone, built the way keras.applications builds one on an input tensor."""
    import keras

    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="tblock1_conv")(input_tensor)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="tblock2_conv")(x)
    return keras.Model(keras.utils.get_source_inputs(input_tensor), x, name="tiny")


TINY = BackboneSpec("tinynet", "TinyNet", _tiny, "tf", "tblock2_conv", "tblock2_conv", r"^(tblock\d)_", min_size=8)
_REGISTER_TINY = (
    "from tests.test_registries import TINY; from lumbar.backbones import register_backbone; register_backbone(TINY)"
)


@pytest.fixture
def tiny(monkeypatch):
    """TinyNet registered after the paper's four backbones (and unregistered after the test)."""
    monkeypatch.setitem(BACKBONES, TINY.name, TINY)
    return TINY


def _row(backbone, mode="frozen", roi=False):
    row = {"backbone": backbone, "mode": mode, "roi": roi, "support": 91, "normal_positives": 55}
    row.update({f"normal_{m}": 0.5 for m in ("accuracy", "precision", "recall", "f1")})
    return row


def test_a_registered_backbone_is_in_every_list_and_in_table_order(tiny, monkeypatch):
    from lumbar.steps.plan import plan_step
    from lumbar.train import TrainConfig

    assert backbone_names()[-1] == "tinynet" and PROCEDURES["procedure1"].default_backbones().endswith(",tinynet")
    assert backbones.backbone_title("tinynet") == "TinyNet"
    assert {c.backbone for c in plan_step(backbones="tinynet", modes="frozen", images="full")} == {"tinynet"}
    assert TrainConfig.from_profile("quick", backbone="tinynet", image_size=16).run_name == "tinynet-frozen-full"
    # table rows follow the registry's order, not the alphabet: register a second one to tell them apart
    monkeypatch.setitem(BACKBONES, "alexnet", BackboneSpec("alexnet", "AlexNet", _tiny, "caffe", "a", "a", "x"))
    rows = [_row("alexnet"), _row("tinynet"), _row("vgg16"), _row("mobilenetv2")]
    table6 = procedure1_tables(rows)[0]
    assert [r[0].text for r in table6.rows] == ["vgg16", "mobilenetv2", "tinynet", "alexnet"]


def test_an_unregistered_backbone_is_refused_by_the_configs():
    from lumbar.train import TrainConfig

    with pytest.raises(InputError, match="unknown backbone 'tinynet'; choose one of vgg16, vgg19, resnet50"):
        TrainConfig.from_profile("quick", backbone="tinynet")
    with pytest.raises(InputError, match="registered already"):
        register_backbone(BACKBONES["vgg16"])


def test_the_cli_lists_a_backbone_registered_before_it_is_built():
    command = f"{_REGISTER_TINY}; from lumbar.cli import app; app(['train', '--help'])"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-c", command], capture_output=True, text=True, env=env, cwd=root, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "vgg16 | vgg19 | resnet50 | mobilenetv2 | tinynet" in result.stdout


def test_a_registered_backbone_builds_and_fine_tunes_its_top_block(tiny):
    from lumbar.models import ModelConfig, blocks, build_model

    model = build_model(ModelConfig("tinynet", weights="none", mode="finetune", image_size=16, unfreeze_blocks=1))
    assert blocks(model, "tinynet") == ["tblock1", "tblock2"]
    assert model.get_layer("tblock2_conv").trainable and not model.get_layer("tblock1_conv").trainable
    assert model.output_shape == (None, 1)
    with pytest.raises(InputError, match="no ImageNet weights"):
        build_model(ModelConfig("tinynet", weights="imagenet", image_size=16))


def test_procedures_name_their_experiment_source_tables_and_pipeline():
    assert experiment_name("procedure2") == PROCEDURES["procedure2"].experiment == "lumbar-procedure2"
    assert procedure_of_source("ssl").name == "procedure3" and procedure_of_source("imagenet").name == "procedure1"
    assert PRETRAINING_TABLES == {"procedure2": (11, 12, "dataset_a"), "procedure3": (13, 14, "dataset_b")}
    assert PROCEDURES["procedure3"].default_backbones() == "vgg16,vgg19"  # the paper pretrained these two
    with pytest.raises(InputError, match="choose one of procedure1, procedure2, procedure3"):
        procedure("procedure4")


def test_the_launcher_lists_every_registered_procedure():
    pytest.importorskip("kfp")
    from launch.launcher import PIPELINES

    for name, registered in PROCEDURES.items():
        module, _, function = registered.pipeline.partition(":")
        assert PIPELINES[name].__module__ == module and PIPELINES[name].__name__ == function


_ADD_SPECIFICITY = """
from lumbar import metrics
metrics.METRICS += (metrics.Metric("specificity", "Specificity", lambda c: metrics._safe(c.tn, c.tn + c.fp)),)
metrics.METRIC_NAMES = tuple(m.name for m in metrics.METRICS)
import numpy as np
from lumbar.compare import procedure1_tables
row = {"backbone": "vgg16", "mode": "frozen", "roi": False}
row.update(metrics.binary_metrics(np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.2, 0.1, 0.6, 0.3]), positive="normal"))
table = procedure1_tables([row])[0]
print(table.columns)
print([cell.text for cell in table.rows[0]])
"""


def test_a_metric_added_to_the_registry_gets_a_key_and_a_column():
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", _ADD_SPECIFICITY], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert result.returncode == 0, result.stderr
    columns, cells = (ast.literal_eval(line) for line in result.stdout.splitlines())
    values = dict(zip(columns, cells, strict=True))
    # normal positive: 2 of the 3 normal discs predicted normal (recall 66.67 %), 1 of the 2 abnormal ones predicted
    # abnormal (specificity 50 %): the new column holds the new formula's value
    assert values["Specificity %"] == "50.00" and values["Recall %"] == "66.67"
