"""Dataset A: a labelled MRI set assembled from several public collections, mapped to normal/abnormal.

Each source is a folder whose first-level sub-folders are classes, as the public collections are
published (``brain-sample/yes/...``, ``brain-sample/no/...``). A mapping file says which class folders
are normal and which abnormal, per source or for all sources; folders it does not name are reported,
never guessed::

    default:                 # for every source
      normal: [no, no_tumor, normal]
      abnormal: [yes, glioma, meningioma, pituitary, stroke, tumor]
    sources:                 # optional, per source (replaces the default for that source)
      kaggle-b:
        normal: [notumor]
        abnormal: [glioma, meningioma, pituitary]

Images are read by their content, not their extension (PNG data behind ``.jpg`` exists); RGB, RGBA
(composited on black), L, P and 16-bit modes are converted to 8-bit grey; images larger than
``max_size`` are scaled down. Exact duplicates (the same grey pixels) within or across sources are kept
once. Output images are named by their pixel hash, so duplicates collapse by construction. The split
is 85/15 (train/val, the paper's), stratified on the label and seeded.

Outputs: ``manifest.csv`` (``image_path,label,split,source,class_folder,original,sha256,width,height``),
``images/``, ``datacard.md`` (counts per source and class, duplicates) and ``report.json`` (every input
file: used, duplicate, unmapped, or quarantined with its reason).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumbar import __version__
from lumbar.errors import InputError
from lumbar.paths import build_time, replacing_folder
from lumbar.progress import NullProgress, Progress
from lumbar.split import stratified_assign

LABELLED_COLUMNS: tuple[str, ...] = (
    "image_path",
    "label",
    "split",
    "source",
    "class_folder",
    "original",
    "sha256",
    "width",
    "height",
)
PAPER_MAPPING: dict[str, tuple[str, ...]] = {
    "normal": ("no", "no_tumor", "normal"),
    "abnormal": ("yes", "glioma", "meningioma", "pituitary", "stroke", "tumor"),
}


@dataclass(frozen=True)
class ClassMapping:
    """Which class folders are normal (0) and abnormal (1), for all sources and per source."""

    default: tuple[tuple[str, int], ...] = ()
    per_source: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()

    def label(self, source: str, folder: str) -> int | None:
        """The label of a class folder of a source (case-insensitive), or None when it is not mapped."""
        table = dict(self.default)
        for name, pairs in self.per_source:
            if name == source:
                table = dict(pairs)
        return table.get(folder.strip().lower())

    @staticmethod
    def _pairs(section: object, where: str) -> tuple[tuple[str, int], ...]:
        if not isinstance(section, Mapping) or not set(section) <= {"normal", "abnormal"}:
            raise InputError(f"mapping {where} must have the keys normal and/or abnormal, each a list of folder names")
        pairs: dict[str, int] = {}
        for key, label in (("normal", 0), ("abnormal", 1)):
            names = section.get(key) or []
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise InputError(f"mapping {where}.{key} must be a list of folder names")
            for name in names:
                if pairs.get(name.lower(), label) != label:
                    raise InputError(f"mapping {where}: folder {name!r} is both normal and abnormal")
                pairs[name.lower()] = label
        return tuple(sorted(pairs.items()))

    @classmethod
    def from_dict(cls, data: Mapping) -> ClassMapping:
        """Build from the YAML structure (``default`` and/or ``sources``)."""
        unknown = set(data) - {"default", "sources"}
        if unknown:
            raise InputError(f"mapping has unknown key(s) {', '.join(sorted(unknown))}; expected default and sources")
        default = cls._pairs(data["default"], "default") if data.get("default") else ()
        sources = data.get("sources") or {}
        if not isinstance(sources, Mapping):
            raise InputError("mapping 'sources' must map source names to normal/abnormal lists")
        per_source = tuple((str(k), cls._pairs(v, f"sources.{k}")) for k, v in sources.items())
        if not default and not per_source:
            raise InputError("mapping names no class folder")
        return cls(default, per_source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ClassMapping:
        """Load a mapping file."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"mapping file {path} could not be read ({exc.__class__.__name__})") from None
        if not isinstance(data, Mapping):
            raise InputError(f"mapping file {path} must be a YAML mapping with default and/or sources")
        return cls.from_dict(data)

    @classmethod
    def paper(cls) -> ClassMapping:
        """The paper's mapping: no, no_tumor, normal -> normal; yes, glioma, ... -> abnormal."""
        return cls.from_dict({"default": {k: list(v) for k, v in PAPER_MAPPING.items()}})


@dataclass(frozen=True)
class LabelledBuildConfig:
    """Settings of a Dataset A build.

    Attributes:
        sources: ``(name, folder)`` pairs.
        out: Dataset folder to write.
        mapping: Class folder -> label mapping.
        fractions: Train / validation shares (paper: 85/15).
        seed: Split seed.
        max_size: Longest side of the written images, in pixels (larger ones are scaled down).
        workers: Processes for decoding.
    """

    sources: tuple[tuple[str, Path], ...]
    out: Path
    mapping: ClassMapping
    fractions: tuple[float, float] = (0.85, 0.15)
    seed: int = 0
    max_size: int = 512
    workers: int = 1

    def __post_init__(self) -> None:
        if not self.sources:
            raise InputError("give at least one --source NAME=DIR")
        names = [n for n, _ in self.sources]
        if len(set(names)) != len(names):
            raise InputError(f"source names must be unique, got {', '.join(names)}")
        for name, folder in self.sources:
            if not name or "/" in name:
                raise InputError(f"source name {name!r} must be a non-empty word without '/'")
            if not Path(folder).is_dir():
                raise InputError(f"source {name}: folder {folder} does not exist")
        if self.max_size < 32 or self.workers < 1 or len(self.fractions) != 2 or abs(sum(self.fractions) - 1) > 1e-6:
            raise InputError("max_size must be >= 32, workers >= 1, and fractions two shares summing to 1")


def to_grey(image) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Convert a PIL image of any common mode to 8-bit grey (RGBA and transparent P composited on black)."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        return np.rint(scaled).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(black, rgba).convert("L"))
    return np.asarray(image.convert("L"))


def _process(args: tuple[str, str, str, int]) -> dict:
    """Decode one file, write its grey PNG under its pixel hash; never raises for bad content."""
    from PIL import Image, UnidentifiedImageError

    path, relative, out, max_size = args
    try:
        with Image.open(path) as image:
            image.load()
            fmt = image.format
            grey = to_grey(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return {
            "original": relative,
            "status": "quarantined",
            "reason": f"not a readable image ({exc.__class__.__name__})",
        }
    digest = hashlib.sha256(f"{grey.shape}".encode() + grey.tobytes()).hexdigest()
    picture = Image.fromarray(grey)
    if max(picture.size) > max_size:
        scale = max_size / max(picture.size)
        picture = picture.resize(
            (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), Image.LANCZOS
        )
    target = Path(out) / "images" / f"{digest[:24]}.png"
    if not target.exists():
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        picture.save(tmp, format="PNG")
        os.replace(tmp, target)
    suffix = Path(relative).suffix.lower().lstrip(".")
    expected = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "tif": "TIFF", "tiff": "TIFF", "bmp": "BMP"}.get(suffix)
    return {
        "original": relative,
        "status": "used",
        "sha256": digest,
        "image_path": f"images/{target.name}",
        "width": picture.width,
        "height": picture.height,
        "format": fmt,
        "mode": image.mode,
        "extension_mismatch": expected is not None and expected != fmt,
    }


def build_dataset_a(config: LabelledBuildConfig, progress: Progress | None = None) -> dict:
    """Build Dataset A; return the report's summary.

    Raises:
        InputError: For bad options, or when no image could be used.
    """
    progress = progress or NullProgress()
    with replacing_folder(config.out) as work:
        return _build(config, work, progress)


def _build(config: LabelledBuildConfig, work: Path, progress: Progress) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    (work / "images").mkdir()
    files: list[dict] = []
    jobs: list[tuple[str, str, str, int]] = []
    for name, folder in config.sources:
        root = Path(folder)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = f"{name}/{path.relative_to(root).as_posix()}"
            parts = path.relative_to(root).parts
            entry = {"original": relative, "source": name, "class_folder": parts[0] if len(parts) > 1 else ""}
            if len(parts) < 2:
                entry.update(status="unmapped", reason="file outside any class folder")
            else:
                label = config.mapping.label(name, parts[0])
                if label is None:
                    entry.update(status="unmapped", reason=f"class folder {parts[0]!r} is not in the mapping")
                else:
                    entry["label"] = label
                    jobs.append((str(path), relative, str(work), config.max_size))
            files.append(entry)
    by_original = {f["original"]: f for f in files}
    advance = progress.task("reading images", len(jobs))
    if config.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            results = list(_advancing(pool.map(_process, jobs, chunksize=8), advance))
    else:
        results = list(_advancing(map(_process, jobs), advance))
    kept: dict[str, dict] = {}
    for result in results:  # in source order: the first copy of an image is the one kept
        entry = by_original[result["original"]]
        entry.update({k: v for k, v in result.items() if k != "original"})
        if entry["status"] != "used":
            continue
        first = kept.setdefault(entry["sha256"], entry)
        if first is not entry:
            conflict = " with a different label" if first["label"] != entry["label"] else ""
            entry.update(status="duplicate", reason=f"same pixels as {first['original']}{conflict}")
    used = list(kept.values())
    if not used:
        raise InputError("no readable image in any mapped class folder; see the mapping and the sources")
    keys = [e["sha256"] for e in used]
    splits = stratified_assign(keys, [e["label"] for e in used], config.fractions, ("train", "val"), config.seed)
    with (work / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(LABELLED_COLUMNS)
        for e in sorted(used, key=lambda e: e["original"]):
            e["split"] = splits[e["sha256"]]
            writer.writerow(
                [
                    e["image_path"],
                    e["label"],
                    e["split"],
                    e["source"],
                    e["class_folder"],
                    e["original"],
                    e["sha256"],
                    e["width"],
                    e["height"],
                ]
            )
    counts = Counter(f["status"] for f in files)
    summary = {
        "files": len(files),
        "used": counts["used"],
        "duplicates": counts["duplicate"],
        "unmapped": counts["unmapped"],
        "quarantined": counts["quarantined"],
        "extension_mismatches": sum(1 for f in files if f.get("extension_mismatch")),
        "modes": dict(Counter(f["mode"] for f in files if f.get("mode"))),
    }
    report = {
        "lumbar_version": __version__,
        "created": build_time(),
        "summary": summary,
        "files": [
            {k: v for k, v in f.items() if k not in ("label",)} | ({"label": f["label"]} if "label" in f else {})
            for f in files
        ],
    }
    (work / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (work / "datacard.md").write_text(_datacard(used, files, summary, config), encoding="utf-8")
    return summary


def _advancing(results, advance):  # type: ignore[no-untyped-def]
    for result in results:
        advance(1)
        yield result


def _datacard(used: Sequence[dict], files: Sequence[dict], summary: dict, config: LabelledBuildConfig) -> str:
    rows = []
    for name, _ in config.sources:
        for label, title in ((0, "normal"), (1, "abnormal")):
            members = [e for e in used if e["source"] == name and e["label"] == label]
            folders = sorted({e["class_folder"] for e in members})
            rows.append(f"| {name} | {title} | {', '.join(folders) or '-'} | {len(members)} |")
    splits = Counter((e["split"], e["label"]) for e in used)
    unmapped = sorted(
        {f"{f['source']}/{f['class_folder']}" for f in files if f["status"] == "unmapped" and f["class_folder"]}
    )
    return "\n".join(
        [
            "# Dataset A data card",
            "",
            f"Built by lumbar {__version__}: labelled MRI images from {len(config.sources)} source(s), "
            "class folders mapped to normal/abnormal, converted to 8-bit grey (content-based decoding), "
            "exact duplicates kept once, "
            f"split {round(config.fractions[0] * 100)}/{round(config.fractions[1] * 100)} (train/val) stratified on "
            f"the label, seed {config.seed}.",
            "",
            f"- Input files: {summary['files']}; used: {summary['used']}; exact duplicates removed: "
            f"{summary['duplicates']}; unmapped: {summary['unmapped']}; quarantined: {summary['quarantined']}",
            f"- Files whose extension does not match their content: {summary['extension_mismatches']}",
            f"- Colour modes read: {', '.join(f'{k} {v}' for k, v in sorted(summary['modes'].items()))}",
            f"- Unmapped class folders: {', '.join(unmapped) if unmapped else 'none'}",
            "",
            "| Source | Class | Folders | Images |",
            "|---|---|---|---|",
            *rows,
            "",
            "| Split | Normal | Abnormal | Total |",
            "|---|---|---|---|",
            *(
                f"| {s} | {splits[(s, 0)]} | {splits[(s, 1)]} | {splits[(s, 0)] + splits[(s, 1)]} |"
                for s in ("train", "val")
            ),
            "",
        ]
    )
