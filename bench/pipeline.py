"""Benchmark: the ``dataset_c`` pipeline run locally with kfp.local vs the same library function called directly.

Writes a synthetic PACS export, then builds Dataset C from it ``--repeats`` times each way, alternating,
in one process run:

* baseline: ``lumbar.steps.build_dataset_c.build_dataset_c_step`` called in this process (what the component calls);
* pipeline: ``lumbar pipeline run dataset_c --local`` as a function (kfp.local, SubprocessRunner without a
  venv: the task is a fresh Python subprocess that imports lumbar, reads its executor input and writes
  its artifacts and metadata).

Prints the median wall time of each, the ratio, and the overhead per pipeline step (target: under 2 s).

Usage: ``python bench/pipeline.py [--patients 10] [--repeats 3] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from launch.launcher import run_local
    from lumbar.steps.build_dataset_c import build_dataset_c_step
    from lumbar.synth import SynthConfig, write_pacs_export

    with tempfile.TemporaryDirectory(prefix="lumbar-bench-pipeline-") as scratch:
        base = Path(scratch)
        os.environ["LUMBAR_DATA_DIR"] = str(base / "data")
        os.environ.setdefault("LUMBAR_PSEUDONYM_SECRET", "bench-X3CZKg3Hj4mDh0EH")
        export = base / "export"
        write_pacs_export(export, SynthConfig(patients=args.patients, seed=0, size=256, workers=args.workers))
        files = sum(1 for p in export.rglob("*") if p.is_file())
        print(f"export: {args.patients} patients, {files} files; {args.repeats} builds each way, alternating")

        direct, piped = [], []
        for i in range(args.repeats):
            started = time.perf_counter()
            build_dataset_c_step(
                export_uri=str(export),
                out=base / f"direct-{i}",
                workers=args.workers,
                labels_uri="",
                publish_to="",
                split_by="patient",
                seed=0,
                fractions="",
            )
            direct.append(time.perf_counter() - started)
            started = time.perf_counter()
            run_local("dataset_c", {"export_uri": str(export), "workers": args.workers}, base / "root")
            piped.append(time.perf_counter() - started)

    steps = 1
    d, p = statistics.median(direct), statistics.median(piped)
    print(f"direct library call (baseline): median {d:.2f} s  ({', '.join(f'{t:.2f}' for t in direct)})")
    print(f"kfp.local pipeline run:         median {p:.2f} s  ({', '.join(f'{t:.2f}' for t in piped)})")
    print(f"ratio pipeline / direct: {p / d:.2f}x; overhead per step: {(p - d) / steps:.2f} s (target < 2 s)")


if __name__ == "__main__":
    main()
