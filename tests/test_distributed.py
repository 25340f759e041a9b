"""Data-parallel training: two replicas on the CPU split into two logical devices, and the GPU count setting."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lumbar.distribute import REPLICAS_ENV, Replicas, requested_replicas
from lumbar.errors import InputError

# Run in a fresh interpreter: TensorFlow's CPU can be split into logical devices only before it starts.
# 1. A lumbar model fitted inside `data_parallel(2)` (4 images a replica, rate 1e-4 scaled to 2e-4) and on
#    one device with the step the rule says is the same (8 images, 2e-4), on the same fixed batches: the
#    losses and weights must agree. 2. `train_model(replicas=2)` on the dataset: it runs on two replicas
#    with the global batch and scaled rate recorded. (Its losses are not compared with a one-device run:
#    Keras draws one extra iterator of a distributed dataset to build the model, which advances the
#    reshuffling, so the two runs see the images in different orders.)
SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.config.experimental.enable_op_determinism()

import keras
from lumbar.distribute import data_parallel
from lumbar.models import ModelConfig, build_model
from lumbar.train import TrainConfig, train_model

dataset, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (16, 32, 32, 1)).astype("float32")
y = (np.arange(16) % 2).astype("float32")
fits = {}
for replicas, per_replica in ((2, 4), (1, 8)):
    keras.utils.set_random_seed(0)
    with data_parallel(replicas) as parallel:
        if replicas == 2:
            strategy = parallel.strategy
            ids = strategy.run(lambda: tf.distribute.get_replica_context().replica_id_in_sync_group)
            where = strategy.run(lambda: tf.constant(1.0) + 0.0)  # each replica computes on its own device
            layout = {
                "count": parallel.count,
                "in_sync": strategy.num_replicas_in_sync,
                "ids": sorted(int(i) for i in strategy.experimental_local_results(ids)),
                "devices": sorted(t.device.split("/")[-1] for t in strategy.experimental_local_results(where)),
            }
        model = build_model(ModelConfig("vgg16", "none", "finetune", 32, dropout=0.0))
        model.compile(keras.optimizers.Adam(parallel.learning_rate(1e-4 * (2 // replicas))), "binary_crossentropy")
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(parallel.global_batch(per_replica))
        history = model.fit(data, epochs=2, verbose=0, shuffle=False)
        lr = float(np.asarray(model.optimizer.learning_rate.numpy()))
        fits[replicas] = {"losses": history.history["loss"], "lr": lr}
        np.savez(f"{out}/fit{replicas}.npz", *[np.asarray(w) for w in model.trainable_weights])
base = dict(backbone="vgg16", weights="none", mode="finetune", image_size=32, epochs=2, dropout=0.0,
            augment=False, seed=0, standardize=False, class_weights="none")
config = TrainConfig.from_profile("quick", batch_size=4, learning_rate=1e-4, unfreeze="blocks:1", monitor="val_loss",
                                   probe_epochs=0, head_l2=0.0, **base)
result = train_model(config, dataset, f"{out}/two", track=False,
                     replicas=2)
info = json.load(open(f"{out}/two/model.json"))
run = {key: info[key] for key in ("replicas", "global_batch_size", "scaled_learning_rate")}
run["losses"] = [h["loss"] for h in result.history]
print("RESULT " + json.dumps({"layout": layout, "fits": fits, "run": run}))
"""


def test_two_replicas_train_as_one_device_with_the_global_batch(built_dataset, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(built_dataset), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        # oneDNN off: on an AVX-512 (bf16) CPU, TensorFlow 2.21's oneDNN graph rewrite fed the second CPU
        # replica's block1_conv2 the 3-channel input ("input depth must be evenly divisible by filter depth:
        # 3 vs 64", 2026-12-01); replicas on logical CPU devices exist only in tests, GPUs do not use oneDNN
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "0"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    layout, fits, run = result["layout"], result["fits"], result["run"]
    assert layout == {"count": 2, "in_sync": 2, "ids": [0, 1], "devices": ["device:CPU:0", "device:CPU:1"]}
    # two replicas of 4 images at 1e-4 (scaled to 2e-4) train exactly as one device with 8 images at 2e-4
    assert fits["2"]["lr"] == pytest.approx(2e-4) == fits["1"]["lr"]
    assert np.allclose(fits["2"]["losses"], fits["1"]["losses"], rtol=1e-4), fits
    assert fits["1"]["losses"][-1] < fits["1"]["losses"][0]  # and they did train
    two, one = np.load(tmp_path / "fit2.npz"), np.load(tmp_path / "fit1.npz")
    assert len(two.files) == len(one.files) > 2
    for key in one.files:
        assert np.allclose(two[key], one[key], rtol=1e-4, atol=1e-6), key
    # lumbar train on two replicas: per-replica batch 4 is a global batch of 8 at twice the rate
    assert run["replicas"] == 2 and run["global_batch_size"] == 8
    assert run["scaled_learning_rate"] == pytest.approx(2e-4)
    assert len(run["losses"]) == 2 and all(np.isfinite(run["losses"]))


def test_replica_count_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv(REPLICAS_ENV, raising=False)
    assert requested_replicas() == 0  # every GPU visible
    monkeypatch.setenv(REPLICAS_ENV, "4")
    assert requested_replicas() == 4 and requested_replicas(2) == 2
    monkeypatch.setenv(REPLICAS_ENV, "four")
    with pytest.raises(InputError, match=REPLICAS_ENV):
        requested_replicas()
    with pytest.raises(InputError, match="negative"):
        requested_replicas(-1)
    four = Replicas(4, ("a", "b", "c", "d"))
    assert four.global_batch(64) == 256 and four.learning_rate(1e-5) == pytest.approx(4e-5)


def test_the_gpu_count_reaches_the_accelerator_limit_and_the_replicas(tmp_path):
    import yaml

    from launch.launcher import compile_pipeline
    from pipelines.settings import ClusterSettings

    path = compile_pipeline("procedure1", tmp_path / "p1.yaml", ClusterSettings(gpus=4))
    spec = next(yaml.safe_load_all(path.read_text()))  # the pipeline spec (the platform spec follows)
    executors = spec["deploymentSpec"]["executors"]
    trained = [e for e in executors.values() if "accelerator" in e["container"].get("resources", {})]
    assert trained
    for executor in trained:
        assert executor["container"]["resources"]["accelerator"]["resourceCount"] == "4"
        env = {item["name"]: item["value"] for item in executor["container"].get("env", [])}
        assert env[REPLICAS_ENV] == "4"
    with pytest.raises(InputError, match="gpus"):
        ClusterSettings(gpus=0)
