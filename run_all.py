"""Run every demo's quick preset, print a summary table and write outputs/summary.md.

    python run_all.py               # every demo in minimal/demos/
    python run_all.py vae trpo      # just these
    python run_all.py --full        # the full settings instead of --quick (slow)

A demo module provides `Config` (a dataclass), `QUICK` (the quick preset's overrides), `run(config)`
returning its headline metrics, and `TARGETS`: {metric: (">=" or "<=", value)}, the numbers its
quick preset must reach. The exit status is non-zero when any demo fails or misses a target.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

import minimal.demos
from minimal.cli import make_config
from minimal.errors import UserError
from minimal.training import RunRecord

OUTPUTS = Path("outputs")
FIGURE_SUFFIXES = (".png", ".gif")


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
    row["seconds"] = time.perf_counter() - start
    return row


def format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in metrics.items())


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="demos to run (default: all)")
    parser.add_argument("--full", action="store_true", help="full settings, not --quick")
    args = parser.parse_args(argv)
    available = demo_names()
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        parser.error(f"unknown demo(s) {unknown}; available: {available}")
    names = args.names or available
    if OUTPUTS.exists() and not OUTPUTS.is_dir():
        parser.error(f"{OUTPUTS.resolve()} is a file; run_all.py writes each demo's figures and "
                     f"summary.md into the folder {OUTPUTS}/ here: move the file away")
    rows = []
    for name in names:
        print(f"== {name}", flush=True)
        rows.append(run_demo(name, quick=not args.full))
    print()
    print(f"{'demo':<22}{'status':<8}{'seconds':>8}  metrics")
    for row in rows:
        print(f"{row['name']:<22}{row['status']:<8}{row['seconds']:>8.1f}  "
              f"{format_metrics(row['metrics'])}  {row['detail']}")
    if not rows:
        print("(no demos found)")
    write_summary(rows, OUTPUTS / "summary.md")
    return 0 if all(row["status"] == "pass" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
