"""Run every demo's quick preset, print a summary table and write outputs/summary.md.

    python run_all.py               # every demo in minimal/demos/
    python run_all.py vae trpo      # just these
    python run_all.py --full        # the full settings instead of --quick (slow)
    python run_all.py --gallery     # then copy each demo's main figure, shrunk, into gallery/

A demo module provides `Config` (a dataclass), `QUICK` (the quick preset's overrides), `run(config)`
returning its headline metrics, and `TARGETS`: {metric: (">=" or "<=", value)}, the numbers its
quick preset must reach. The exit status is non-zero when any demo fails or misses a target.

The gallery (gallery/NAME.png or .gif, shown in README.md) is each demo's main figure from its
quick preset, shrunk to at most GALLERY_WIDTH pixels wide with a small palette so that the
whole set stays within GALLERY_BUDGET bytes; `make gallery` regenerates it.
"""

from __future__ import annotations

import argparse
import importlib
import math
import pkgutil
import sys
import time
import traceback
from pathlib import Path

import minimal.demos
from minimal.app.cli import make_config
from minimal.app.training import RunRecord
from minimal.errors import UserError
from minimal.kernels import threads
from minimal.kernels.process import limit_blas_threads, tune_process

OUTPUTS = Path("outputs")
FIGURE_SUFFIXES = (".png", ".gif")
GALLERY = Path(__file__).resolve().parent / "gallery"
GALLERY_WIDTH = 560  # pixels; a GIF's frames at most GALLERY_GIF_WIDTH
GALLERY_GIF_WIDTH = 256
GALLERY_COLOURS = 64  # palette size of a PNG; a GIF's frames get GALLERY_GIF_COLOURS
GALLERY_GIF_COLOURS = 16
GALLERY_GIF_FRAMES = 16  # a longer GIF keeps every k-th frame (and its last)
GALLERY_BUDGET = 800_000  # bytes for the whole gallery (the MuJoCo episode GIF is ~120 KB)
# Each demo's main figure, in outputs/NAME/: what README.md shows for it.
GALLERY_FIGURES = {
    "actor_critic": "learning_curves.png",
    "cartpole": "hill_climbing.png",
    "chat_lstm": "chat_lstm_copypastas.png",
    "deconvnet": "one_feature.png",
    "deepcolor": "ladder.png",
    "dqn": "dqn_ablations.png",
    "draw": "canvas_test.png",
    "dynamic_programming": "gridworld_policy_evaluation.png",
    "gan": "samples.gif",
    "model_based": "dyna_maze.png",
    "model_free": "cliff_walk.png",
    "natural_gradient": "plain_vs_natural.png",
    "trpo": "reward_CartPole-v1.png",
    "vae": "reconstructions.png",
}


def demo_names() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(minimal.demos.__path__))


def check_targets(metrics: dict, targets: dict) -> list[str]:
    """The targets a demo missed, as readable strings (an empty list when all are met)."""
    missed = []
    for name, (op, bound) in targets.items():
        value = metrics.get(name)
        if value is None:
            missed.append(f"{name} missing")
        elif op == ">=" and not value >= bound:
            missed.append(f"{name} {value:.4g} < {bound}")
        elif op == "<=" and not value <= bound:
            missed.append(f"{name} {value:.4g} > {bound}")
        elif op not in (">=", "<="):
            raise ValueError(f"target {name}: unknown comparison {op!r}")
    return missed


def run_demo(name: str, quick: bool) -> dict:
    """Run one demo; never raises, returns a result row."""
    start = time.perf_counter()
    row = {"name": name, "metrics": {}, "status": "pass", "detail": "", "seconds": 0.0}
    try:
        module = importlib.import_module(f"minimal.demos.{name}")
        preset = getattr(module, "QUICK", {}) if quick else {}
        config = make_config(module.Config, preset, out_dir=str(OUTPUTS / name))
        with RunRecord(name, config) as record:  # outputs/NAME/run.json
            row["metrics"] = record.metrics = module.run(config) or {}
        missed = check_targets(row["metrics"], getattr(module, "TARGETS", {}))
        if missed:
            row["status"], row["detail"] = "FAIL", "; ".join(missed)
    except UserError as error:  # the user's to fix (a bad data file, ...): one line says what
        print(f"{name}: {error}", file=sys.stderr, flush=True)
        row["status"], row["detail"] = "ERROR", str(error)
    except Exception as error:  # noqa: BLE001 - a broken demo is reported, the others still run
        traceback.print_exc()
        row["status"], row["detail"] = "ERROR", f"{type(error).__name__}: {error}"
    finally:  # a demo that pinned BLAS to one thread (dqn, trpo) leaves the next one its cores
        limit_blas_threads(threads.THREADS)
    row["seconds"] = time.perf_counter() - start
    return row


def format_metrics(metrics: dict) -> str:
    """name value pairs; a NaN (a metric that does not apply to this run) reads "n/a"."""
    return ", ".join(f"{k} {_short(v)}" for k, v in metrics.items())


def _short(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_summary(rows: list[dict], path: Path) -> None:
    lines = ["# Demo summary", "", "| demo | status | metrics | seconds | figures |",
             "|---|---|---|---|---|"]
    for row in rows:
        folder = path.parent / row["name"]
        figures = sorted(p for p in folder.glob("*") if p.suffix in FIGURE_SUFFIXES) \
            if folder.is_dir() else []
        links = " ".join(f"[{p.name}]({row['name']}/{p.name})" for p in figures)
        status = row["status"] + (f" ({row['detail']})" if row["detail"] else "")
        lines.append(f"| {row['name']} | {status} | {format_metrics(row['metrics'])} "
                     f"| {row['seconds']:.0f} | {links} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _shrunk(frame, width: int, colours: int):
    from PIL import Image

    frame = frame.convert("RGB")
    if frame.width > width:
        height = max(1, round(frame.height * width / frame.width))
        frame = frame.resize((width, height), Image.LANCZOS)
    return frame.quantize(colours, dither=Image.Dither.NONE)


def gallery_image(source: Path, target: Path, gif_frames: int = GALLERY_GIF_FRAMES,
                  gif_width: int = GALLERY_GIF_WIDTH) -> Path:
    """Write a small copy of a PNG or GIF figure (fewer colours, pixels and frames); a GIF
    keeps at most `gif_frames` frames of at most `gif_width` pixels."""
    from PIL import Image, ImageSequence

    from minimal.app.files import atomic_file

    with Image.open(source) as image:
        if source.suffix == ".gif":
            frames = [frame.copy() for frame in ImageSequence.Iterator(image)]
            duration = image.info.get("duration", 100)
            step = max(1, -(-len(frames) // gif_frames))
            kept = frames[::step] + ([frames[-1]] if (len(frames) - 1) % step else [])
            small = [_shrunk(frame, gif_width, GALLERY_GIF_COLOURS) for frame in kept]
            with atomic_file(target) as file:
                small[0].save(file, format="GIF", save_all=True, append_images=small[1:],
                              duration=duration * step, loop=0, optimize=True)
        else:
            with atomic_file(target) as file:
                _shrunk(image, GALLERY_WIDTH, GALLERY_COLOURS).save(file, format="PNG",
                                                                    optimize=True)
    return target


def make_gallery(names: list[str], outputs: Path = OUTPUTS, gallery: Path = GALLERY) -> list[str]:
    """Refresh gallery/ from the demos' outputs; returns the problems (missing figures)."""
    problems = []
    for name in names:
        figure = GALLERY_FIGURES.get(name)
        if figure is None:
            problems.append(f"{name}: no entry in GALLERY_FIGURES")
            continue
        source = outputs / name / figure
        if not source.is_file():
            problems.append(f"{name}: {source} is missing (did the demo run?)")
            continue
        gallery_image(source, gallery / f"{name}{source.suffix}")
    total = sum(path.stat().st_size for path in gallery.glob("*") if path.is_file())
    if total > GALLERY_BUDGET:
        problems.append(f"the gallery holds {total} bytes, over its budget of {GALLERY_BUDGET}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="demos to run (default: all)")
    parser.add_argument("--full", action="store_true", help="full settings, not --quick")
    parser.add_argument("--gallery", action="store_true",
                        help="after the runs, copy each demo's main figure (shrunk) to gallery/")
    parser.add_argument("--gallery-only", action="store_true",
                        help="rebuild gallery/ from the figures already in outputs/, run nothing")
    args = parser.parse_args(argv)
    available = demo_names()
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        parser.error(f"unknown demo(s) {unknown}; available: {available}")
    names = args.names or available
    if OUTPUTS.exists() and not OUTPUTS.is_dir():
        parser.error(f"{OUTPUTS.resolve()} is a file; run_all.py writes each demo's figures and "
                     f"summary.md into the folder {OUTPUTS}/ here: move the file away")
    if args.gallery_only:
        problems = make_gallery(names)
        print("\n".join(problems) or f"gallery/ rebuilt from {OUTPUTS}/")
        return 1 if problems else 0
    tune_process()  # BLAS threads' timeout, malloc: see minimal/kernels/process.py
    rows = []
    try:
        for name in names:
            print(f"== {name}", flush=True)
            rows.append(run_demo(name, quick=not args.full))
    except KeyboardInterrupt:  # Ctrl-C: one line, and the summary of the demos that finished
        write_summary(rows, OUTPUTS / "summary.md")
        print(f"\nrun_all: interrupted during {name}; {len(rows)} demo(s) had finished "
              f"(outputs/summary.md)", file=sys.stderr)
        return 130
    print()
    print(f"{'demo':<22}{'status':<8}{'seconds':>8}  metrics")
    for row in rows:
        print(f"{row['name']:<22}{row['status']:<8}{row['seconds']:>8.1f}  "
              f"{format_metrics(row['metrics'])}  {row['detail']}")
    if not rows:
        print("(no demos found)")
    write_summary(rows, OUTPUTS / "summary.md")
    passed = all(row["status"] == "pass" for row in rows)
    if args.gallery:
        problems = make_gallery([row["name"] for row in rows if row["status"] == "pass"])
        print("\n".join(problems) or "gallery/ refreshed")
        passed = passed and not problems
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
