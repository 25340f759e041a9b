"""The one rule by which the CLI and the pipeline steps turn their options into a config (lumbar.steps.options)."""

import pytest

from lumbar.errors import InputError
from lumbar.pretrain import SSLConfig
from lumbar.profiles import profile_settings
from lumbar.steps.options import CLI_UNSET, PIPELINE_UNSET, config_from_profile, profile_options, tracking_options
from lumbar.tracking import standard_tags


def test_options_named_like_a_field_set_it_and_the_rest_are_not_passed():
    options = {"backbone": "vgg19", "epochs": 7, "shards": "/data/b", "track": True, "profile": "paper"}
    assert profile_options(SSLConfig, options) == {"backbone": "vgg19", "epochs": 7}
    config = config_from_profile(SSLConfig, "quick", options)
    assert (config.backbone, config.epochs, config.profile) == ("vgg19", 7, "quick")
    assert config.batch_size == profile_settings("quick", "ssl")["batch_size"]  # not given: the profile's


def test_unset_values_keep_the_profile_and_a_flag_is_always_set():
    quick = profile_settings("quick", "ssl")
    pipeline = {"epochs": 0, "steps_per_epoch": 0, "image_size": 48, "freeze_batchnorm": False, "seed": 0}
    config = config_from_profile(SSLConfig, "quick", pipeline, PIPELINE_UNSET)
    assert config.epochs == quick["epochs"] and config.steps_per_epoch == quick.get("steps_per_epoch")
    assert config.image_size == 48
    assert config.freeze_batchnorm is False  # False == 0, but a flag is never "unset"
    cli = {"epochs": None, "image_size": 48}
    assert config_from_profile(SSLConfig, "quick", cli, CLI_UNSET).epochs == quick["epochs"]
    with pytest.raises(InputError, match="epochs >= 1"):  # the CLI's 0 is a value, refused by the config
        config_from_profile(SSLConfig, "quick", {"epochs": 0}, CLI_UNSET)
    with pytest.raises(InputError, match="unknown profile"):
        config_from_profile(SSLConfig, "huge", {})


def test_a_step_is_tracked_in_its_procedure_and_tagged_with_the_kubeflow_run(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    tracked = tracking_options("procedure3", {"lumbar.weights_source": "ssl"})
    assert tracked == {"track": True, "experiment": "lumbar-procedure3", "tags": {"lumbar.weights_source": "ssl"}}
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    untracked = tracking_options("procedure1")
    assert untracked["track"] is False and untracked["tags"] == {}
    # the Kubeflow run id comes from the environment (a pod label on a cluster), never from a task input
    monkeypatch.delenv("KFP_RUN_ID", raising=False)
    monkeypatch.setenv("LUMBAR_KFP_RUN_ID", "run-7")
    assert standard_tags()["kfp.run_id"] == "run-7"
