"""Benchmark: the ``tf.data`` input pipeline against Keras 2's ``ImageDataGenerator.flow_from_dataframe``.

Both read the same training images of a synthetic Dataset C at the paper's settings (224 px, batch 64,
grey) with the same augmentation (brightness factor in [0.1, 0.7], horizontal and vertical flips),
and are iterated without a model, in one run: images/s in the first epoch (decode) and in later
epochs (``tf.data`` serves them from its cache), and the ratio. The baseline comes from the
``tf-keras`` package (Keras 3 removed ``ImageDataGenerator``), installed without dependencies so it
does not pull a second TensorFlow beside ``tensorflow-cpu``; ``make bench`` installs it.

Usage: ``python bench/input.py [--patients 100] [--epochs 4] [--dataset DIR]`` (``--dataset``: an
existing Dataset C folder instead of a synthetic one, e.g. your own export's, or one built on another
machine)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=8, help="list each training image this many times")
    parser.add_argument("--dataset", type=Path, help="an existing Dataset C folder (default: build a synthetic one)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from tf_keras.preprocessing.image import ImageDataGenerator
    except ImportError:
        raise SystemExit(
            "the baseline needs tf-keras: pip install --no-deps 'tf-keras==2.21.*' (make bench does)"
        ) from None
    import numpy as np
    import pandas as pd

    from lumbar.data import InputConfig, make_dataset, split_records

    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or Path(tmp) / "dataset"
        if args.dataset is None:
            from lumbar.dataset_c import BuildConfig, build_dataset_c
            from lumbar.synth import SynthConfig, write_pacs_export

            export = Path(tmp) / "export"
            write_pacs_export(export, SynthConfig(patients=args.patients, seed=0, workers=2))
            os.environ.setdefault("LUMBAR_PSEUDONYM_SECRET", "bench-input-HEXNF3y0hpoV")
            build_dataset_c(BuildConfig(source=export, labels=export / "labels.csv", out=dataset, workers=2))
        records = split_records(dataset, "train")
        # list the images several times: epochs long enough that fixed start-up costs do not dominate
        records = type(records)(
            records.paths * args.repeat, np.tile(records.labels, args.repeat), records.rows * args.repeat
        )
        n = len(records.paths)
        print(
            f"input pipeline benchmark: {n} training images, {args.size} px, batch {args.batch}, "
            f"{args.epochs} epochs, {len(os.sched_getaffinity(0))} usable cores"
        )

        frame = pd.DataFrame({"path": records.paths, "label": [str(v) for v in records.labels]})
        generator = ImageDataGenerator(brightness_range=[0.1, 0.7], horizontal_flip=True, vertical_flip=True)
        flow = generator.flow_from_dataframe(
            frame,
            x_col="path",
            y_col="label",
            target_size=(args.size, args.size),
            color_mode="grayscale",
            class_mode="binary",
            batch_size=args.batch,
            shuffle=True,
            seed=0,
        )
        baseline = []
        for _ in range(args.epochs):
            start = time.perf_counter()
            seen = sum(len(flow[i][0]) for i in range(len(flow)))
            baseline.append(seen / (time.perf_counter() - start))
            flow.on_epoch_end()

        config = InputConfig(image_size=args.size, batch_size=args.batch, augment=True, seed=0)
        ours = []
        dataset_tf = make_dataset(dataset, "train", config, training=True, records=records)
        for _ in range(args.epochs):
            start = time.perf_counter()
            seen = sum(int(x.shape[0]) for x, _ in dataset_tf)
            ours.append(seen / (time.perf_counter() - start))

        later_base = sum(baseline[1:]) / max(len(baseline) - 1, 1)
        later_ours = sum(ours[1:]) / max(len(ours) - 1, 1)
        rows = (("ImageDataGenerator (baseline)", baseline, later_base), ("tf.data (lumbar.data)", ours, later_ours))
        for name, rates, later in rows:
            print(f"  {name:30}: first epoch {rates[0]:8.1f} images/s, later {later:8.1f} images/s")
        print(
            f"  ratio: first epoch {ours[0] / baseline[0]:.1f}x (target >= 3x), "
            f"later epochs {later_ours / later_base:.1f}x (target >= 10x)"
        )


if __name__ == "__main__":
    main()
