"""Benchmark: the Dataset C builder against a naive baseline, on the same synthetic export, in one run.

Baseline (named "naive"): one process reads every file with its pixels (``dcmread``), decodes every
frame, keeps them, then groups series and selects, windows and writes the same PNG files.

Prints files/s for both and the ratio, for an uncompressed and a JPEG 2000 export (PACS exports are
often compressed), and the peak resident memory (the builder's whole process tree, sampled) for 20
and 40 patients, each measured in a fresh process.

Usage: ``python bench/ingest.py [--patients 20 40] [--workers 2] [--compression none j2k]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path


def naive_build(source: Path, out: Path) -> int:
    """The baseline: read and decode everything, then select. Returns the number of images written."""
    import pydicom
    from PIL import Image

    from lumbar.dicom import FrameRecord, classify_series, window_to_uint8
    from lumbar.roi import crop_roi
    from lumbar.selection import ITEMS, axial_frames, myelo_frames, sagittal_frame

    out.mkdir(parents=True, exist_ok=True)
    loaded = []
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path)
            pixels = ds.pixel_array  # decode every frame
        except Exception:
            continue
        loaded.append((ds, pixels))
    series = defaultdict(list)
    for ds, pixels in loaded:
        series[(str(ds.PatientID), str(ds.SeriesInstanceUID))].append((ds, pixels))
    written = 0
    for (patient, _), members in series.items():
        ds0 = members[0][0]
        record = FrameRecord(
            path="",
            frame_index=0,
            patient_id=patient,
            patient_name="",
            study_uid="",
            series_uid="",
            sop_uid="",
            series_number=0,
            description=str(ds0.get("SeriesDescription", "")),
            instance_number=None,
            position=None,
            normal=None,
            echo_time=float(ds0.EchoTime),
            slice_thickness=None,
            frames_in_file=1,
            images_in_acquisition=None,
            is_localizer="LOCALIZER" in list(ds0.get("ImageType", [])),
            slope=1.0,
            intercept=0.0,
            window_center=None,
            window_width=None,
            monochrome1=False,
        )
        import numpy as np

        iop = [float(v) for v in ds0.ImageOrientationPatient]
        normal = np.cross(iop[:3], iop[3:])
        record.normal = tuple(normal)
        kind = classify_series([record])
        if kind not in ("sag_t2", "ax_t2", "myelo"):
            continue
        members.sort(key=lambda m: float(np.dot(normal, [float(v) for v in m[0].ImagePositionPatient])))
        n = len(members)
        if kind == "sag_t2":
            picks = [(ITEMS[2], sagittal_frame(n))]
        elif kind == "myelo":
            picks = list(zip(ITEMS[:2], myelo_frames(n), strict=False))
        else:
            if n < 23:
                continue
            picks = [(next(i for i in ITEMS if i.disc == d), f) for d, f in axial_frames().items()]
        for item, number in picks:
            ds, pixels = members[number - 1]
            image = window_to_uint8(
                pixels,
                float(ds.get("RescaleSlope", 1)),
                float(ds.get("RescaleIntercept", 0)),
                float(ds.WindowCenter) if "WindowCenter" in ds else None,
                float(ds.WindowWidth) if "WindowWidth" in ds else None,
            )
            Image.fromarray(image).save(out / item.filename(patient), format="PNG")
            if kind == "ax_t2":
                Image.fromarray(crop_roi(image)).save(out / ("roi_" + item.filename(patient)), format="PNG")
            written += 1
    return written


class _PeakRss:
    """Samples the resident memory of this process and all its descendants."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._me = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for proc in [self._me, *self._me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(interval)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure_one(method: str, source: Path, workers: int) -> dict:
    """Run one build in this (fresh) process; return wall time, files, images and peak RSS."""
    from lumbar.dataset_c import BuildConfig, build_dataset_c

    os.environ.setdefault("LUMBAR_PSEUDONYM_SECRET", "bench-X3CZKg3Hj4mDh0EH")
    files = sum(1 for p in source.rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory() as tmp, _PeakRss() as rss:
        start = time.perf_counter()
        if method == "naive":
            images = naive_build(source, Path(tmp) / "naive")
        else:
            result = build_dataset_c(
                BuildConfig(source=source, labels=source / "labels.csv", out=Path(tmp) / "ds", workers=workers)
            )
            images = result.images
        seconds = time.perf_counter() - start
    return {"method": method, "files": files, "images": images, "seconds": seconds, "peak_rss_mb": rss.peak / 2**20}


def _run_fresh(method: str, source: Path, workers: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure-one", method, str(source), "--workers", str(workers)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[20, 40])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compression", nargs="+", default=["none", "j2k"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--measure-one", nargs=2, metavar=("METHOD", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_one:
        method, source = args.measure_one
        print(json.dumps(measure_one(method, Path(source), args.workers)))
        return

    from lumbar.synth import SynthConfig, write_pacs_export

    print(
        f"Dataset C ingest benchmark: builder (--workers {args.workers}) vs naive baseline, "
        f"{len(os.sched_getaffinity(0))} usable cores, matrix {args.size}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rss: dict[int, float] = {}
        for compression in args.compression:
            for patients in args.patients:
                source = Path(tmp) / f"export-{compression}-{patients}"
                write_pacs_export(
                    source,
                    SynthConfig(
                        patients=patients, seed=0, size=args.size, compression=compression, workers=args.workers
                    ),
                )
                naive = _run_fresh("naive", source, 1)
                ours = _run_fresh("builder", source, args.workers)
                fps_naive, fps_ours = naive["files"] / naive["seconds"], ours["files"] / ours["seconds"]
                print(
                    f"[{compression:>4}] {patients} patients, {ours['files']} files "
                    f"({ours['files'] / patients:.0f}/patient), {ours['images']} images"
                )
                for name, m, fps in (("naive  ", naive, fps_naive), ("builder", ours, fps_ours)):
                    print(
                        f"    {name} : {fps:8.1f} files/s  ({m['seconds']:.2f} s)  peak RSS {m['peak_rss_mb']:.0f} MB"
                    )
                print(f"    ratio   : {fps_ours / fps_naive:.1f}x faster than naive (target >= 5x)")
                if compression == args.compression[0]:
                    rss[patients] = ours["peak_rss_mb"]
        if len(rss) >= 2:
            (p1, r1), (p2, r2) = sorted(rss.items())[0], sorted(rss.items())[-1]
            print(
                f"builder peak RSS: {p1} patients {r1:.0f} MB, {p2} patients {r2:.0f} MB "
                f"(growth {100 * (r2 - r1) / r1:+.1f}% for {p2 / p1:.0f}x the patients)"
            )


if __name__ == "__main__":
    main()
