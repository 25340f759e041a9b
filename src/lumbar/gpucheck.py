"""``python -m lumbar.gpucheck``: does this image's TensorFlow train on a GPU here?

The gpu-check Job (``k8s/overlays/gpu-cluster``) runs it in the training image with the pipelines' GPU
node selector, toleration and request. It exits 1 unless TensorFlow lists a GPU and a few training
steps of a small convolutional model, in mixed precision (``mixed_float16``), run with their variables
on that GPU and give a finite loss. ``--allow-cpu`` runs the same steps on the CPU when no GPU is
listed (to test the check itself; the Job never passes it).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time


def run(steps: int = 5, allow_cpu: bool = False) -> int:
    """Run the check; print one line per finding; return the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    built = tf.sysconfig.get_build_info()
    cuda = built.get("cuda_version", "none")
    if gpus:
        print(f"TensorFlow {tf.__version__} (CUDA {cuda}) lists {len(gpus)} GPU(s): {', '.join(g.name for g in gpus)}")
        device = "/GPU:0"
    elif allow_cpu:
        print(f"TensorFlow {tf.__version__} (CUDA {cuda}) lists no GPU; --allow-cpu: training on the CPU")
        device = "/CPU:0"
    else:
        print(
            f"error: TensorFlow {tf.__version__} (built with CUDA {cuda}) lists no GPU: check the node's NVIDIA "
            "driver, the pod's nvidia.com/gpu limit, and that this is the training image",
            file=sys.stderr,
        )
        return 1
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with tf.device(device):
            rng = np.random.default_rng(0)
            images = rng.random((64, 64, 64, 1), dtype=np.float32)
            labels = (images.mean(axis=(1, 2, 3)) > 0.5).astype(np.float32)
            model = keras.Sequential(
                [
                    keras.Input((64, 64, 1)),
                    keras.layers.Conv2D(16, 3, activation="relu"),
                    keras.layers.MaxPooling2D(),
                    keras.layers.Conv2D(32, 3, activation="relu"),
                    keras.layers.GlobalAveragePooling2D(),
                    keras.layers.Dense(1, activation="sigmoid", dtype="float32"),
                ]
            )
            model.compile(optimizer="adam", loss="binary_crossentropy")
            model.train_on_batch(images[:16], labels[:16])  # build and compile the step
            start = time.perf_counter()
            for step in range(steps):
                lo = (step * 16) % 64
                loss = float(model.train_on_batch(images[lo : lo + 16], labels[lo : lo + 16]))
            elapsed = (time.perf_counter() - start) / steps
        kernel = model.layers[0].kernel
        placed = str(getattr(kernel, "value", kernel).device)
        compute = model.layers[0].compute_dtype
    finally:
        keras.mixed_precision.set_global_policy("float32")
    want = device.split(":")[0].strip("/")
    if want not in placed.upper() or compute != "float16" or not math.isfinite(loss):
        print(
            f"error: the training steps did not run as asked: variables on {placed!r}, compute dtype {compute}, "
            f"loss {loss}",
            file=sys.stderr,
        )
        return 1
    rate = f"{elapsed * 1000:.1f} ms/step"
    print(f"ok: {steps} mixed-precision ({compute}) training steps on {placed}, {rate}, loss {loss:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m lumbar.gpucheck [--steps N] [--allow-cpu]``."""
    parser = argparse.ArgumentParser(prog="python -m lumbar.gpucheck", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="training steps to time (default 5)")
    parser.add_argument("--allow-cpu", action="store_true", help="train on the CPU when no GPU is listed (tests)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return run(args.steps, args.allow_cpu)


if __name__ == "__main__":
    sys.exit(main())
