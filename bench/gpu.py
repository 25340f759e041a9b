"""Benchmark: training throughput of the four backbones on an accelerator, float32 against mixed precision.

For each backbone x batch size x precision (built by ``lumbar.models`` with random weights, ``finetune``
mode, 224 px, compiled with XLA): one ``fit`` call of a single step (the compile, timed on its own), a
warm-up ``fit`` of a few steps, then one timed ``fit`` epoch of at least ``--steps`` steps and at least
``--min-epoch-s`` seconds (estimated from the warm-up), so the fixed cost of a ``fit`` call does not
count. The batches are
synthetic and already on the device (one batch, put there once, fed again every step), so the figure is
the model's training speed, not the input pipeline's. Mixed precision is ``mixed_bfloat16`` on the JAX
backend and ``mixed_float16`` on TensorFlow (``lumbar.models.MIXED_POLICIES``); float32 is the
baseline measured in the same run. Peak device memory: ``peak_bytes_in_use`` of the JAX device, or
TensorFlow's ``get_memory_info`` peak.

Every configuration runs in its own process, so a device's peak memory belongs to one configuration
and one that fails (out of memory) does not stop the others. On the JAX backend the compiles of all
configurations run first, ``--compile-workers`` at a time, into a persistent compilation cache; the
measurements then run one at a time and load their program from that cache (compile time dominates on
a GPU). ``--full`` adds ResNet50 trained end to end (every layer), the setting published ResNet50
training throughputs use.

Prints one table and writes ``gpu.json`` (rewritten after every configuration, so a run stopped by a
time limit keeps what it measured) and ``gpu.md`` to ``--out``.

Usage: ``KERAS_BACKEND=jax python bench/gpu.py [--out DIR] [--smoke]`` (``--smoke``: every backbone at
tiny size on the CPU in a few minutes, to check the script runs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BACKBONE_NAMES = ("vgg16", "vgg19", "resnet50", "mobilenetv2")  # lumbar.models.BACKBONES (not imported here)
RESULT_PREFIX = "RESULT "


def configurations(args: argparse.Namespace) -> list[dict]:
    """The configurations to measure, most wanted first (the paper's batch 64, mixed precision)."""
    configs = [
        {"backbone": b, "batch": n, "precision": p, "layers": "finetune", "image_size": args.image_size}
        for n in args.batch_sizes
        for p in args.precisions
        for b in args.backbones
    ]
    if args.full:
        configs.append(
            {
                "backbone": "resnet50",
                "batch": max(args.batch_sizes),
                "precision": "mixed",
                "layers": "all",
                "image_size": args.image_size,
            }
        )
    return configs


def measure(
    config: dict, steps: int, warmup: int, min_epoch_s: float, cache_dir: str | None, compile_only: bool
) -> dict:
    """Build, compile and time one configuration in this process (the worker's body)."""
    started = time.perf_counter()
    import keras
    import numpy as np

    from lumbar.models import ModelConfig, build_model, precision_policy

    backend = keras.backend.backend()
    if backend == "jax" and cache_dir:
        import jax

        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    keras.utils.set_random_seed(0)
    size, batch = config["image_size"], config["batch"]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 1)).astype("float32")
    y = rng.integers(0, 2, (batch, 1)).astype("float32")
    with precision_policy(config["precision"] == "mixed") as policy:
        unfreeze = {"unfreeze_blocks": 1000} if config["layers"] == "all" else {}
        model = build_model(
            ModelConfig(backbone=config["backbone"], weights="none", mode="finetune", image_size=size, **unfreeze)
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="binary_crossentropy", jit_compile=True)
        data = _device_batches(backend, x, y)
        built = time.perf_counter()

        def fit(n: int) -> float:
            start = time.perf_counter()
            model.fit(data(), steps_per_epoch=n, epochs=1, verbose=0, shuffle=False)
            np.asarray(keras.ops.convert_to_numpy(model.trainable_variables[-1]))  # wait for the device
            return time.perf_counter() - start

        first = fit(1)
        result = {
            **config,
            "policy": policy,
            "backend": backend,
            "xla": bool(model.jit_compile),
            "trainable_weights": len(model.trainable_weights),
            "params": int(model.count_params()),
            "start_s": round(built - started, 2),
            "first_step_s": round(first, 2),
        }
        if compile_only:
            return result
        per_step = fit(warmup) / warmup
        # short epochs are dominated by the fixed cost of a fit call: time at least min_epoch_s
        steps = max(steps, min(math.ceil(min_epoch_s / per_step), 1000))
        seconds = fit(steps)
    result.update(
        steps=steps,
        warmup_steps=warmup,
        epoch_s=round(seconds, 3),
        images_per_s=round(steps * batch / seconds, 1),
        peak_memory_gib=_peak_memory_gib(backend),
        device=_device_name(backend),
    )
    return result


def _device_batches(backend: str, x, y):  # type: ignore[no-untyped-def]
    """A factory of endless iterators over one batch kept on the device (a fresh iterator per ``fit``)."""
    if backend == "jax":
        import jax

        on_device = (jax.device_put(x), jax.device_put(y))

        def batches():  # type: ignore[no-untyped-def]
            while True:
                yield on_device

        return batches
    import tensorflow as tf

    with tf.device("/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"):
        dataset = tf.data.Dataset.from_tensors((tf.constant(x), tf.constant(y))).repeat()
    return lambda: dataset


def _peak_memory_gib(backend: str) -> float | None:
    if backend == "jax":
        import jax

        stats = jax.local_devices()[0].memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] if gpus else None
    return round(peak / 2**30, 2) if peak else None


def _device_name(backend: str) -> str:
    if backend == "jax":
        import jax

        device = jax.local_devices()[0]
        return f"{device.platform}:{device.device_kind}"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"gpu:{tf.config.experimental.get_device_details(gpus[0]).get('device_name', 'GPU')}" if gpus else "cpu"


def run_worker(config: dict, args: argparse.Namespace, compile_only: bool, timeout: float) -> dict:
    """Run :func:`measure` for one configuration in a fresh process; failures come back as ``error``."""
    request = {
        "config": config,
        "steps": args.steps,
        "warmup": args.warmup_steps,
        "min_epoch_s": args.min_epoch_s,
        "cache_dir": args.cache_dir,
        "compile_only": compile_only,
    }
    command = [sys.executable, __file__, "--worker", json.dumps(request)]
    env = dict(os.environ)
    if compile_only:  # several compile at once: no process may take the device's memory for itself
        env.update(
            XLA_PYTHON_CLIENT_PREALLOCATE="false",
            XLA_PYTHON_CLIENT_MEM_FRACTION=f"{0.9 / max(args.compile_workers, 1):.2f}",
        )
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {**config, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {**config, "error": f"exit {done.returncode}: {tail[:300]}"}
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["process_s"] = round(time.perf_counter() - started, 1)
    return result


def in_process(config: dict, args: argparse.Namespace) -> dict:
    """Run :func:`measure` here (the peak memory is then the whole run's, so it is left out)."""
    try:
        result = measure(config, args.steps, args.warmup_steps, args.min_epoch_s, None, compile_only=False)
    except Exception as exc:  # one configuration's failure is a row of the table, not the end of the run
        return {**config, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {**result, "peak_memory_gib": None}


def label(config: dict) -> str:
    """``resnet50 b64 mixed`` (and ``all layers`` for end-to-end training)."""
    extra = " all layers" if config["layers"] == "all" else ""
    return f"{config['backbone']} b{config['batch']} {config['precision']}{extra}"


def table(results: list[dict]) -> str:
    """The results as a Markdown table, with the speed-up of mixed precision over float32."""
    by_key = {(r["backbone"], r["batch"], r["precision"], r["layers"]): r for r in results}
    rows = [
        "| backbone | layers trained | batch | precision | images/s | mixed / float32 | peak memory GiB "
        "| compile s (first step) | epoch s |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        layers = "all" if r["layers"] == "all" else "finetune (top block + head)"
        if "error" in r:
            rows.append(
                f"| {r['backbone']} | {layers} | {r['batch']} | {r['precision']} | failed: {r['error']} | | | | |"
            )
            continue
        base = by_key.get((r["backbone"], r["batch"], "float32", r["layers"]))
        ratio = (
            f"{r['images_per_s'] / base['images_per_s']:.2f}x"
            if r["precision"] == "mixed" and base and "images_per_s" in base
            else ""
        )
        memory = "" if r.get("peak_memory_gib") is None else f"{r['peak_memory_gib']:.1f}"
        compile_s = r.get("compile_s", r["first_step_s"])
        rows.append(
            f"| {r['backbone']} | {layers} | {r['batch']} | {r.get('policy', r['precision'])} | "
            f"{r['images_per_s']:,.0f} | {ratio} | {memory} | {compile_s:.1f} | {r['epoch_s']:.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONE_NAMES), choices=BACKBONE_NAMES)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--precisions", nargs="+", default=["mixed", "float32"], choices=["mixed", "float32"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=15, help="fewest steps of the timed epoch")
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps run after the compile, before timing")
    parser.add_argument("--min-epoch-s", type=float, default=2.0, help="more timed steps until the epoch lasts this")
    parser.add_argument("--full", action="store_true", help="also ResNet50 with every layer trained")
    parser.add_argument("--compile-workers", type=int, default=4, help="JAX: compiles run this many at a time")
    parser.add_argument("--timeout", type=float, default=240, help="seconds one configuration may take")
    parser.add_argument(
        "--budget",
        type=float,
        default=0,
        help="seconds for the whole run (0: no limit); "
        "compiling ahead stops at half of it, configurations that would not fit are skipped",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, in one process: check it runs")
    parser.add_argument("--in-process", action="store_true", help="measure everything in this process (no memory)")
    parser.add_argument("--out", type=Path, default=None, help="folder for gpu.json and gpu.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        request = json.loads(args.worker)
        print(RESULT_PREFIX + json.dumps(measure(**request)), flush=True)
        return
    if args.smoke:
        args.image_size, args.batch_sizes, args.steps, args.warmup_steps, args.min_epoch_s = 32, [4], 2, 1, 0
        args.in_process = True
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    out = args.out or Path(tempfile.mkdtemp(prefix="lumbar-gpu-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    configs = configurations(args)
    meta = {
        "backend": backend,
        "host": platform.node(),
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "image_size": args.image_size,
        "min_steps": args.steps,
        "min_epoch_s": args.min_epoch_s,
        "warmup_steps": args.warmup_steps,
        "smoke": args.smoke,
        "budget_s": args.budget,
    }
    print(
        f"GPU training benchmark: {len(configs)} configurations, backend {backend}, {args.image_size} px, "
        f"timed epochs of >= {args.steps} steps and >= {args.min_epoch_s:g} s after {args.warmup_steps} "
        f"warm-up steps; results in {out}",
        flush=True,
    )
    compiles: dict[str, dict] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lumbar-xla-cache-") as cache:
        if backend == "jax" and args.compile_workers > 1 and not args.in_process:
            args.cache_dir = cache

            def compile_one(config: dict) -> None:
                if args.budget and time.perf_counter() - started > args.budget / 2:
                    print(f"  not compiled ahead (half the time budget spent): {label(config)}", flush=True)
                    return
                result = run_worker(config, args, compile_only=True, timeout=args.timeout)
                compiles[label(config)] = result
                state = f"error: {result['error']}" if "error" in result else f"first step {result['first_step_s']} s"
                print(f"  compiled {label(config)}: {state} ({time.perf_counter() - started:.0f} s)", flush=True)

            with ThreadPoolExecutor(args.compile_workers) as pool:
                list(pool.map(compile_one, configs))
            meta["compile_phase_s"] = round(time.perf_counter() - started, 1)
        results: list[dict] = []
        longest = 0.0  # seconds of the slowest measurement so far, to judge what still fits the budget
        for config in configs:
            compiled = compiles.get(label(config), {})
            elapsed = time.perf_counter() - started
            needs = 1.5 * longest if "first_step_s" in compiled else longest + compiled.get("process_s", 60.0)
            if args.budget and elapsed + needs > args.budget:
                result = {**config, "error": f"skipped: {elapsed:.0f} s of the {args.budget:.0f} s budget spent"}
            elif args.in_process:
                result = in_process(config, args)
            else:
                limit = args.timeout if not args.budget else max(min(args.timeout, args.budget - elapsed), 30)
                result = run_worker(config, args, False, limit)
                longest = max(longest, result.get("process_s", 0.0))
            if "first_step_s" in compiled:
                result["compile_s"] = compiled["first_step_s"]
            results.append(result)
            shown = result.get("error") or (
                f"{result['images_per_s']:,.0f} images/s, peak {result['peak_memory_gib']} GiB, "
                f"first step {result['first_step_s']} s"
            )
            print(f"  {label(config)}: {shown} ({time.perf_counter() - started:.0f} s)", flush=True)
            meta["seconds"] = round(time.perf_counter() - started, 1)
            (out / "gpu.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    text = table(results)
    (out / "gpu.md").write_text(text + "\n")
    print(text)
    print(f"total {time.perf_counter() - started:.0f} s; wrote {out / 'gpu.json'} and {out / 'gpu.md'}")


if __name__ == "__main__":
    main()
