"""Dataset B: a large unlabelled MRI set (DICOM of any series, and images) written as TFRecord shards.

Built for 200k+ images: the inputs are listed once (sorted), processed in fixed chunks of files by
parallel workers with a bounded number of chunks in flight (memory stays flat), and written to shards
of about ``shard_mb`` MB that always end on a chunk boundary. Every closed shard is recorded in
``index.json`` with the range of inputs it covers, so a re-run after a kill skips the finished shards
and starts at the first input not yet in one. A progress bar shows images/s.

Each DICOM frame (every series) and each image becomes one 8-bit grey PNG at ``image_size`` x
``image_size`` (padded to a square with black, then resized; or stretched to the square, as ``lumbar
train --roi`` does with the ROI crops, with ``fit="stretch"``). DICOM identifiers never reach a shard:
an image is named by the same keyed pseudonym as Dataset C (HMAC of the PatientID) plus a keyed token
of its instance and its frame number.

Every input is accounted for in ``accounting/shard-NNNNN.csv`` (``input,status,reason,images``, with
status ``used``, ``skipped`` or ``quarantined``) and summed in ``index.json``.

Shard records (``tf.train.Example``): ``image`` (PNG bytes), ``source`` (pseudonymous id), ``height``,
``width``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lumbar import __version__
from lumbar.deid import Pseudonymizer
from lumbar.errors import InputError, check_choice
from lumbar.profiles import PAPER_IMAGE_SIZE
from lumbar.progress import NullProgress, Progress

INDEX = "index.json"
FORMAT = "lumbar-shards/1"
FITS = ("pad", "stretch")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"}


@dataclass(frozen=True)
class UnlabelledBuildConfig:
    """Settings of a Dataset B build.

    Attributes:
        sources: Folders to crawl (DICOM of any series, and image files).
        out: Local folder of the shards.
        image_size: Side of the square grey images, in pixels.
        shard_mb: Target shard size in MB (a shard closes at the first chunk boundary past it).
        workers: Processes decoding inputs.
        chunk_files: Inputs per work unit (and the granularity of shard boundaries).
        key_secret_env: Environment variable with the pseudonymisation secret (as for Dataset C).
        fit: How a non-square image becomes square: ``pad`` (black borders, aspect kept) or
            ``stretch`` (resized to the square, as training resizes ROI crops; use it for a Dataset B
            of ROI crops, so SimCLR sees them as the probe will).
    """

    sources: tuple[Path, ...]
    out: Path
    image_size: int = PAPER_IMAGE_SIZE
    shard_mb: float = 100.0
    workers: int = 1
    chunk_files: int = 64
    key_secret_env: str | None = None
    fit: str = "pad"

    def __post_init__(self) -> None:
        check_choice("fit", self.fit, FITS)
        if not self.sources:
            raise InputError("give at least one --source folder")
        for folder in self.sources:
            if not Path(folder).is_dir():
                raise InputError(f"source folder {folder} does not exist")
        if self.image_size < 16 or self.shard_mb <= 0 or self.workers < 1 or self.chunk_files < 1:
            raise InputError("image_size must be >= 16, shard_mb > 0, workers >= 1 and chunk_files >= 1")


@dataclass
class ShardsSummary:
    """What a build wrote."""

    out: Path
    shards: int
    images: int
    files: int
    counts: dict[str, int] = field(default_factory=dict)
    resumed_from: int = 0


def _square(grey: np.ndarray, size: int, fit: str) -> bytes:
    from PIL import Image

    canvas = grey
    if fit == "pad":
        height, width = grey.shape
        side = max(height, width)
        canvas = np.zeros((side, side), dtype=np.uint8)
        top, left = (side - height) // 2, (side - width) // 2
        canvas[top : top + height, left : left + width] = grey
    buffer = io.BytesIO()
    Image.fromarray(canvas).resize((size, size), Image.BILINEAR).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _process_file(
    root: str, relative: str, size: int, pseudonymizer: Pseudonymizer, fit: str
) -> tuple[str, str, str, list]:
    """Turn one input into images: ``(input, status, reason, [(source_id, png), ...])``."""
    from PIL import Image, UnidentifiedImageError

    from lumbar.dataset_a import to_grey
    from lumbar.dicom import decode_frame, read_header

    result = read_header(root, relative)
    if result.status == "indexed":
        if pseudonymizer.is_demo and not result.frames[0].synthetic:
            reason = "the published demo key is only for files lumbar synth wrote; set a secret of your own"
            return pseudonymizer.file_token(relative), "quarantined", reason, []
        pid = result.frames[0].patient_id
        pseudonym = pseudonymizer.pseudonym(pid)
        shown = pseudonymizer.file_token(relative)  # a DICOM file's path may name its patient: keyed token
        images, problems = [], []
        for frame in result.frames:
            try:
                pixels = decode_frame(root, frame)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            ident = f"{pseudonym}/{pseudonymizer.token(frame.sop_uid)}/{frame.frame_index}"
            images.append((ident, _square(pixels if pixels.ndim == 2 else pixels[..., 0], size, fit)))
        if not images:
            return shown, "quarantined", problems[0] if problems else "no decodable frame", []
        return shown, "used", f"{len(problems)} frame(s) not decodable" if problems else "", images
    if result.status == "not_needed" or not result.reason.startswith("not a DICOM file"):
        return relative, "quarantined" if result.status == "quarantined" else "skipped", result.reason, []
    try:
        with Image.open(os.path.join(root, relative)) as image:
            image.load()
            grey = to_grey(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if Path(relative).suffix.lower() in _IMAGE_SUFFIXES:
            return relative, "quarantined", f"not a readable image ({exc.__class__.__name__})", []
        return relative, "skipped", "neither DICOM nor an image", []
    return relative, "used", "", [(f"image/{pseudonymizer.token(relative)}", _square(grey, size, fit))]


def _process_chunk(args: tuple[list[tuple[str, str]], int, bytes, str]) -> list[tuple[str, str, str, list]]:
    inputs, size, secret, fit = args
    pseudonymizer = Pseudonymizer(secret)
    return [_process_file(root, relative, size, pseudonymizer, fit) for root, relative in inputs]


def list_inputs(sources: tuple[Path, ...]) -> list[tuple[str, str]]:
    """Every file under the sources, as ``(root, relative path)``, sorted (the build's fixed input order)."""
    inputs = []
    for root in sources:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                inputs.append((str(root), Path(dirpath, name).relative_to(root).as_posix()))
    return inputs


def _inputs_digest(inputs: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for root, relative in inputs:
        digest.update(f"{Path(root).name}/{relative}\n".encode())
    return digest.hexdigest()


def _example(source: str, png: bytes, size: int) -> bytes:
    import tensorflow as tf

    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
        "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode()])),
        "height": tf.train.Feature(int64_list=tf.train.Int64List(value=[size])),
        "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[size])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _chunks(inputs: list[tuple[str, str]], start: int, size: int) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    for first in range(start, len(inputs), size):
        yield first, inputs[first : first + size]


def _bounded(pool: ProcessPoolExecutor | None, jobs: Iterator, fn: Callable, in_flight: int) -> Iterator:
    """Ordered results with at most ``in_flight`` jobs submitted at a time (memory stays bounded)."""
    if pool is None:
        for key, payload in jobs:
            yield key, fn(payload)
        return
    pending: list[tuple[object, Future]] = []
    for key, payload in jobs:
        pending.append((key, pool.submit(fn, payload)))
        if len(pending) >= in_flight:
            first_key, future = pending.pop(0)
            yield first_key, future.result()
    for key, future in pending:
        yield key, future.result()


def build_dataset_b(
    config: UnlabelledBuildConfig, progress: Progress | None = None, on_shard: Callable[[Path], None] | None = None
) -> ShardsSummary:
    """Build (or resume) Dataset B shards.

    Args:
        config: The build settings.
        progress: Progress sink (inputs and images).
        on_shard: Called with the index path after every closed shard (uploads use it).
    """
    import tensorflow as tf

    progress = progress or NullProgress()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "accounting").mkdir(exist_ok=True)
    inputs = list_inputs(config.sources)
    digest = _inputs_digest(inputs)
    pseudonymizer = Pseudonymizer.from_env(config.key_secret_env)
    index_path = out / INDEX
    index = {
        "format": FORMAT,
        "lumbar_version": __version__,
        "image_size": config.image_size,
        "fit": config.fit,
        "inputs": len(inputs),
        "inputs_sha256": digest,
        "shards": [],
        "counts": {},
        "complete": False,
    }
    if index_path.is_file():
        previous = json.loads(index_path.read_text())
        if (
            previous.get("inputs_sha256") != digest
            or previous.get("image_size") != config.image_size
            or previous.get("fit", "pad") != config.fit
        ):
            raise InputError(f"{out} holds shards of other inputs, another image size or fit; use a new --out")
        if not pseudonymizer.ephemeral or not previous["shards"]:
            index = previous
        else:
            raise InputError(
                "resuming needs the same pseudonymisation secret: set LUMBAR_PSEUDONYM_SECRET "
                "(or --key-secret-env) as in the first run"
            )
    for stale in out.glob("*.tmp"):
        stale.unlink()
    start = index["shards"][-1]["end"] if index["shards"] else 0
    counts: Counter = Counter(index["counts"])
    advance_files = progress.task("inputs", len(inputs))
    advance_files(start)
    advance_images = progress.task("images", None)
    limit = int(config.shard_mb * 2**20)
    pool = ProcessPoolExecutor(max_workers=config.workers) if config.workers > 1 else None
    writer = None
    shard: dict = {}
    rows: list[tuple] = []

    def open_shard(first: int) -> None:
        nonlocal writer, shard, rows
        number = len(index["shards"])
        shard = {"name": f"shard-{number:05d}.tfrecord", "start": first, "images": 0}
        writer = tf.io.TFRecordWriter(str(out / f"{shard['name']}.tmp"))
        rows = []

    def close_shard(end: int) -> None:
        nonlocal writer
        writer.close()  # type: ignore[union-attr]
        writer = None
        tmp, final = out / f"{shard['name']}.tmp", out / shard["name"]
        os.replace(tmp, final)
        from lumbar.storage import sha256_file

        shard.update(end=end, bytes=final.stat().st_size, sha256=sha256_file(final))
        accounting = out / "accounting" / shard["name"].replace(".tfrecord", ".csv")
        with accounting.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([("input", "status", "reason", "images"), *rows])
        index["shards"].append(dict(shard))
        index["counts"] = dict(counts)
        index["images"] = sum(s["images"] for s in index["shards"])
        _write_json(index_path, index)
        if on_shard:
            on_shard(index_path)

    try:
        jobs = (
            (first, (chunk, config.image_size, pseudonymizer.secret, config.fit))
            for first, chunk in _chunks(inputs, start, config.chunk_files)
        )
        size = 0
        for first, results in _bounded(pool, jobs, _process_chunk, in_flight=2 * config.workers):
            if writer is None:
                open_shard(first)
                size = 0
            for (root, _), (shown, status, reason, images) in zip(
                inputs[first : first + len(results)], results, strict=True
            ):
                for source, png in images:
                    record = _example(source, png, config.image_size)
                    writer.write(record)  # type: ignore[union-attr]
                    size += len(record)
                shard["images"] += len(images)
                counts[status] += 1
                rows.append((f"{Path(root).name}/{shown}", status, reason, len(images)))
                advance_images(len(images))
            advance_files(len(results))
            end = first + len(results)
            if size >= limit or end >= len(inputs):
                close_shard(end)
        if writer is not None:
            close_shard(len(inputs))
    finally:
        if writer is not None:
            writer.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    index["complete"] = True
    index["counts"] = dict(counts)
    index["images"] = sum(s["images"] for s in index["shards"])
    _write_json(index_path, index)
    if on_shard:
        on_shard(index_path)
    return ShardsSummary(out, len(index["shards"]), index["images"], len(inputs), dict(counts), start)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def fetch_shards(uri: str | Path, cache: str | Path | None = None) -> Path:
    """A local folder with the shards at ``uri`` (downloaded once into the cache, hashes verified)."""
    from lumbar.paths import data_dir
    from lumbar.storage import is_remote, open_store

    text = str(uri)
    if not is_remote(text):
        folder = Path(text)
        if not (folder / INDEX).is_file():
            raise InputError(f"{folder} holds no Dataset B shards ({INDEX} missing)")
        return folder
    store = open_store(text)
    index = json.loads(store.get_bytes(INDEX))
    target = Path(cache or data_dir() / "cache") / "shards" / index["inputs_sha256"][:16]
    store.get_tree("", target)
    return target


def read_shards(folder: str | Path, shuffle_seed: int | None = None):  # type: ignore[no-untyped-def]
    """A ``tf.data.Dataset`` of grey images ``(size, size, 1)`` uint8 streamed from the shards of a folder."""
    import tensorflow as tf

    folder = Path(folder)
    index = json.loads((folder / INDEX).read_text())
    files = [str(folder / s["name"]) for s in index["shards"]]
    if not files:
        raise InputError(f"{folder} has no finished shard")
    names = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_seed is not None:
        names = names.shuffle(len(files), seed=shuffle_seed)
    records = names.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(4, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "source": tf.io.FixedLenFeature([], tf.string)}
    size = index["image_size"]

    def decode(record):  # type: ignore[no-untyped-def]
        parsed = tf.io.parse_single_example(record, spec)
        return tf.ensure_shape(tf.io.decode_png(parsed["image"], channels=1), (size, size, 1))

    return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
