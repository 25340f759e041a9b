"""Benchmark: small images as one object each vs packed into a few tar shards, against the local S3 server.

Uploads 1,000 images of about 100 KB and reads them back, both ways, in one run against a real
SeaweedFS S3 endpoint started on loopback for the benchmark (the same server `lumbar services up`
runs). Both ways use the same store code with 8 transfer threads; the shard way includes packing and
unpacking. Prints images/s, MB/s and the ratio (shards over one-object-per-image, the baseline).

Usage: ``python bench/store.py [--images 1000] [--kb 100] [--shard-mb 25]``
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(folder: Path, count: int, kb: int, seed: int = 0) -> int:
    """Write ``count`` grey PNG images of about ``kb`` KB (noise does not compress); return total bytes."""
    rng = np.random.default_rng(seed)
    side = int((kb * 1024) ** 0.5)
    total = 0
    for i in range(count):
        path = folder / f"img{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(path, compress_level=1)
        total += path.stat().st_size
    return total


def pack(images: Path, shards: Path, shard_bytes: int) -> int:
    """Pack the images into tar shards of about ``shard_bytes``; return the number of shards."""
    shards.mkdir(parents=True, exist_ok=True)
    groups: list[list[Path]] = [[]]
    size = 0
    for path in sorted(images.iterdir()):
        if groups[-1] and size >= shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += path.stat().st_size
    for index, group in enumerate(groups):
        with tarfile.open(shards / f"shard-{index:05d}.tar", "w") as tar:
            for path in group:
                tar.add(path, arcname=path.name)
    return len(groups)


def unpack_all(shards: Path) -> int:
    """Read every image back out of the shards (decoding the tar stream); return how many."""
    count = 0
    for shard in sorted(shards.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                Image.open(io.BytesIO(data)).verify()
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--kb", type=int, default=100)
    parser.add_argument("--shard-mb", type=float, default=25)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    from lumbar.services import LocalServices, ServicesConfig
    from lumbar.storage import S3Settings, S3Store

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        services = LocalServices(ServicesConfig(tmp_path / "services", s3_port=0, mlflow_port=0))
        services.start_s3()
        try:
            settings = S3Settings.from_env(services.client_env())
            images = tmp_path / "images"
            images.mkdir()
            total = make_images(images, args.images, args.kb)
            mb = total / 2**20
            print(
                f"S3 store benchmark: {args.images} images, {mb:.1f} MB, SeaweedFS on loopback, "
                f"{args.threads} transfer threads"
            )
            results = {}

            store = S3Store("bench-objects", settings=settings, create_bucket=True)
            start = time.perf_counter()
            store.put_tree(images, workers=args.threads)
            up = time.perf_counter() - start
            start = time.perf_counter()
            store.get_tree("", tmp_path / "back-objects", workers=args.threads)
            read = sum(1 for p in (tmp_path / "back-objects").iterdir() if Image.open(p).verify() is None)
            down = time.perf_counter() - start
            assert read == args.images
            results["one object per image (baseline)"] = (up, down, args.images)

            shard_store = S3Store("bench-shards", settings=settings, create_bucket=True)
            start = time.perf_counter()
            n_shards = pack(images, tmp_path / "shards", int(args.shard_mb * 2**20))
            shard_store.put_tree(tmp_path / "shards", workers=args.threads)
            up = time.perf_counter() - start
            start = time.perf_counter()
            shard_store.get_tree("", tmp_path / "back-shards", workers=args.threads)
            read = unpack_all(tmp_path / "back-shards")
            down = time.perf_counter() - start
            assert read == args.images
            results[f"{n_shards} tar shards of ~{args.shard_mb:g} MB"] = (up, down, n_shards)

            for name, (up, down, objects) in results.items():
                print(f"  {name}: {objects} objects")
                for label, seconds in (("upload", up), ("read", down)):
                    print(
                        f"    {label:8} {args.images / seconds:8.1f} images/s  {mb / seconds:7.1f} MB/s  "
                        f"({objects / seconds:8.1f} objects/s)"
                    )
            (b_up, b_down, _), (s_up, s_down, _) = results.values()
            print(
                f"  ratio (shards / one object per image): upload {b_up / s_up:.1f}x, read back {b_down / s_down:.1f}x"
            )
        finally:
            services.stop_s3()


if __name__ == "__main__":
    main()
