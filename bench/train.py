"""Benchmark: ``lumbar train`` against a bare ``model.fit`` on the same model and data, in one run.

Both train the same configuration (built by ``lumbar.models``, fed by ``lumbar.data``) for the same
epochs. The bare run is ``model.fit`` alone; ``lumbar train`` adds a checkpoint after every epoch
(model with optimizer state, best weights, state file), per-epoch MLflow metrics (local SQLite store),
params and tags. Prints training images/s of both fit loops and the overhead (target: under 5%), and
the end-to-end time of ``lumbar train`` including its one-off start and finish (dataset hashing,
model logging), reported separately because it does not grow with the number of epochs.

Usage: ``python bench/train.py [--patients 60] [--epochs 4] [--backbone vgg16] [--image-size 128]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras

    from lumbar.data import class_weights, make_dataset, split_records
    from lumbar.dataset_c import BuildConfig, build_dataset_c
    from lumbar.models import build_model
    from lumbar.synth import SynthConfig, write_pacs_export
    from lumbar.train import TrainConfig, _compile, train_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["LUMBAR_DATA_DIR"] = str(tmp_path / "data")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        (tmp_path / "data").mkdir()
        export, dataset = tmp_path / "export", tmp_path / "dataset"
        write_pacs_export(export, SynthConfig(patients=args.patients, seed=0, size=128, workers=2))
        os.environ.setdefault("LUMBAR_PSEUDONYM_SECRET", "bench-train-1eVdp7quO2UN")
        build_dataset_c(BuildConfig(source=export, labels=export / "labels.csv", out=dataset, workers=2))
        config = TrainConfig.from_profile(
            "quick",
            backbone=args.backbone,
            weights="none",
            mode="finetune",
            epochs=args.epochs,
            image_size=args.image_size,
            seed=0,
        )
        records = split_records(dataset, "train")
        n = len(records.paths)
        print(
            f"training benchmark: {config.run_name}, {n} training images, {args.image_size} px, "
            f"{args.epochs} epochs, weights none, {len(os.sched_getaffinity(0))} usable cores"
        )

        def bare_fit(epochs: int) -> float:
            keras.utils.set_random_seed(0)
            model = build_model(config.model_config())
            _compile(model, config, jit=False)
            inputs = config.input_config()
            train_ds = make_dataset(dataset, "train", inputs, training=True, records=records)
            val_ds = make_dataset(dataset, "val", inputs)
            start = time.perf_counter()
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=epochs,
                verbose=0,
                shuffle=False,
                class_weight=class_weights(records.labels, 2),
            )
            return time.perf_counter() - start

        # TensorFlow's one-off costs (kernels, caches) are paid once by a warm-up; the two measured runs
        # then alternate so that neither is favoured by running second
        bare_fit(1)
        bare_first = bare_fit(args.epochs)

        start = time.perf_counter()
        result = train_model(config, dataset, tmp_path / "model", experiment="lumbar-bench")
        total = time.perf_counter() - start
        bare = (bare_first + bare_fit(args.epochs)) / 2

        bare_rate, ours_rate = args.epochs * n / bare, result.images_per_second
        print(
            f"  bare model.fit (baseline): {bare_rate:7.1f} images/s ({bare:.1f} s, mean of the runs before and after)"
        )
        print(
            f"  lumbar train fit loop    : {ours_rate:7.1f} images/s ({result.fit_seconds:.1f} s, checkpoints and "
            f"MLflow metrics every epoch)"
        )
        print(f"  overhead of tracking and checkpoints: {100 * (bare_rate / ours_rate - 1):+.1f}% (target < 5%)")
        print(
            f"  lumbar train end to end: {total:.1f} s, of which {total - result.fit_seconds:.1f} s one-off "
            "(dataset version, model build, final model logged to MLflow)"
        )


if __name__ == "__main__":
    main()
