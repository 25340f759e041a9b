"""The model core on Keras' JAX backend, with TensorFlow made unimportable (as on the GPU benchmark machine).

Keras picks its backend once per process, so the check runs in a fresh interpreter.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (dev extra)")

# A lumbar model (VGG16 at 32 px, fine-tune mode, mixed precision) trained for a few steps on one fixed
# batch: one compiled program (the train step), so the test stays cheap. `sys.modules["tensorflow"] =
# None` makes any import of TensorFlow fail, so the run proves that nothing in the model path needs it.
SCRIPT = r"""
import json, sys
sys.modules["tensorflow"] = None
import keras, numpy as np
from lumbar.models import ModelConfig, build_model, precision_policy

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (4, 32, 32, 1)).astype("float32")
y = (np.arange(4) % 2).astype("float32")[:, None]
with precision_policy(True) as policy:
    model = build_model(ModelConfig("vgg16", "none", "finetune", 32))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy", jit_compile=True)
    fixed = [w for w in model.non_trainable_weights if "moving" not in w.path]  # not BN running statistics
    trained_before = [np.array(w) for w in model.trainable_weights]
    fixed_before = [np.array(w) for w in fixed]
    history = model.fit(x, y, batch_size=4, epochs=5, verbose=0, shuffle=False)
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "policy": policy,
    "policy_after": keras.mixed_precision.global_policy().name,
    "conv_dtype": model.get_layer("block5_conv3").compute_dtype,
    "output": [list(model.output.shape), model.output.dtype],
    "losses": [float(v) for v in history.history["loss"]],
    "trained_changed": sum(not np.array_equal(a, np.array(w)) for a, w in zip(trained_before, model.trainable_weights)),
    "trained_total": len(trained_before),
    "fixed_changed": sum(not np.array_equal(a, np.array(w)) for a, w in zip(fixed_before, fixed)),
    "fixed_total": len(fixed_before),
    "tensorflow_loaded": any(m.startswith("tensorflow.") for m in sys.modules),
}))
"""


def test_lumbar_model_trains_on_jax_without_tensorflow():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["backend"] == "jax" and not result["tensorflow_loaded"]
    # mixed precision on JAX is bfloat16; the head's output stays float32; the global policy is restored
    assert result["policy"] == "mixed_bfloat16" and result["conv_dtype"] == "bfloat16"
    assert result["output"] == [[None, 1], "float32"]
    assert result["policy_after"] == "float32"
    # the top block and the head learn, everything below stays as it was
    assert result["trained_changed"] == result["trained_total"] > 2
    assert result["fixed_total"] >= 20 and result["fixed_changed"] == 0
    assert result["losses"][-1] < result["losses"][0], result
