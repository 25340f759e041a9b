"""Benchmark: reading Dataset B from TFRecord shards against one file per image, local and from S3, in one run.

The same images (every DICOM frame of a synthetic export, grey PNG at 128 px) are stored both ways:
as Dataset B shards, and as one PNG file per image (the baseline). Each is read back and decoded with
``tf.data``, from local disk and from the local S3 server (SeaweedFS on loopback; the read includes the
download: a cache fill for the shards, one GET per image for the baseline). Prints images/s and the
ratio.

Usage: ``python bench/shards.py [--patients 30]``
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("LUMBAR_PSEUDONYM_SECRET", "bench-shards-zvL0GCXNusNq")
    import tensorflow as tf
    from PIL import Image

    from lumbar.dataset_b import UnlabelledBuildConfig, build_dataset_b, fetch_shards, read_shards
    from lumbar.services import LocalServices, ServicesConfig
    from lumbar.storage import S3Settings, S3Store
    from lumbar.synth import SynthConfig, write_pacs_export

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["LUMBAR_DATA_DIR"] = str(tmp_path / "data")
        export = tmp_path / "export"
        write_pacs_export(export, SynthConfig(patients=args.patients, seed=0, size=256, workers=2))
        shards = tmp_path / "shards"
        summary = build_dataset_b(
            UnlabelledBuildConfig(sources=(export,), out=shards, image_size=args.image_size, shard_mb=20, workers=2)
        )
        files = tmp_path / "files"
        files.mkdir()
        for i, image in enumerate(read_shards(shards).as_numpy_iterator()):
            Image.fromarray(image[..., 0]).save(files / f"{i:06d}.png", compress_level=3)
        n = summary.images
        size_mb = sum(p.stat().st_size for p in files.iterdir()) / 2**20
        print(
            f"shard benchmark: {n} images of {args.image_size} px ({size_mb:.1f} MB as PNG), "
            f"{summary.shards} shard(s), {len(os.sched_getaffinity(0))} usable cores"
        )

        def read_files(folder: Path) -> int:
            paths = sorted(str(p) for p in folder.iterdir())
            ds = tf.data.Dataset.from_tensor_slices(paths).map(
                lambda p: tf.io.decode_png(tf.io.read_file(p), channels=1), num_parallel_calls=tf.data.AUTOTUNE
            )
            return sum(1 for _ in ds)

        def timed(fn) -> float:  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            count = fn()
            assert count == n, (count, n)
            return n / (time.perf_counter() - start)

        local_files = timed(lambda: read_files(files))
        local_shards = timed(lambda: sum(1 for _ in read_shards(shards)))

        services = LocalServices(ServicesConfig(tmp_path / "services", s3_port=0, mlflow_port=0))
        services.start_s3()
        try:
            env = services.client_env()
            os.environ.update({k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"})
            settings = S3Settings.from_env(env)
            S3Store("bench-files", settings=settings, create_bucket=True).put_tree(files)
            S3Store("bench-shards", settings=settings, create_bucket=True).put_tree(shards)

            def s3_files() -> int:
                store = S3Store("bench-files", settings=settings)
                keys = sorted(store.list())

                def fetch(key: str) -> bytes:
                    with store.open(key) as stream:
                        return stream.read()

                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(8) as pool:
                    return sum(1 for data in pool.map(fetch, keys) if Image.open(io.BytesIO(data)).size)

            s3_file_rate = timed(s3_files)
            s3_shard_rate = timed(
                lambda: sum(1 for _ in read_shards(fetch_shards("s3://bench-shards", tmp_path / "cache")))
            )
        finally:
            services.stop_s3()
        rows = (
            ("local, one file per image (baseline)", local_files, None),
            ("local, shards", local_shards, local_files),
            ("S3, one object per image (baseline)", s3_file_rate, None),
            ("S3, shards (download + read)", s3_shard_rate, s3_file_rate),
        )
        for name, rate, baseline in rows:
            ratio = f"  ({rate / baseline:.1f}x)" if baseline else ""
            print(f"  {name:38}: {rate:9.1f} images/s{ratio}")


if __name__ == "__main__":
    main()
