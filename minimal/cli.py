"""Command line for the demos: a Config dataclass becomes argparse flags, plus a progress line.

A demo declares its settings once, as a dataclass whose trailing comments say what each field
means::

    @dataclass
    class Config:
        seed: int = 0            # seed for every random number in the run
        lr: float = 2e-4         # Adam learning rate
        out_dir: str = "outputs/vae"  # where figures are written

    QUICK = {"epochs": 2}        # the --quick preset: about a minute on 2 cores

`parse_config(Config, QUICK)` turns that into ``--seed``, ``--lr``, ``--out-dir`` (the comments
become ``--help``), and ``--quick`` applies the preset before any explicit flag, so
``--quick --epochs 5`` means "the quick preset, but 5 epochs".
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from typing import Any


def field_comments(config_cls: type) -> dict[str, str]:
    """Map each field of a dataclass to the comment written after it in the source."""
    try:
        source = textwrap.dedent(inspect.getsource(config_cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.end_lineno - 1]
            if "#" in line:
                comments[node.target.id] = line.split("#", 1)[1].strip()
    return comments


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag_type(default: Any):
    """The argparse converter for a field, judged from its default value."""
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, (int, float, str)):
        return type(default)
    if isinstance(default, tuple):
        kind = type(default[0]) if default else str
        return lambda text: tuple(kind(part) for part in text.split(","))
    return str


def build_parser(config_cls: type, description: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser with one flag per Config field and a --quick switch."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="the quick preset (about a minute on 2 cores)"
    )
    comments = field_comments(config_cls)
    for field in dataclasses.fields(config_cls):
        default = _default_of(field)
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(
            flag,
            dest=field.name,
            type=_flag_type(default),
            default=None,
            metavar=type(default).__name__.upper(),
            help=f"{comments.get(field.name, '')} (default: {default!r})",
        )
    return parser


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    raise TypeError(f"Config field {field.name!r} needs a default value")


def make_config(config_cls: type, quick: Mapping[str, Any] | None = None, **overrides: Any):
    """Config with the quick preset applied (if given), then the explicit overrides."""
    values = dict(quick or {})
    values.update(overrides)
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(values) - names
    if unknown:
        raise TypeError(f"{config_cls.__qualname__} has no field(s) {sorted(unknown)}")
    return config_cls(**values)


def parse_config(
    config_cls: type,
    quick: Mapping[str, Any] | None = None,
    argv: Sequence[str] | None = None,
    description: str | None = None,
):
    """Parse the command line into a Config: defaults, then --quick, then explicit flags."""
    parser = build_parser(config_cls, description)
    args = vars(parser.parse_args(argv))
    use_quick = args.pop("quick")
    explicit = {name: value for name, value in args.items() if value is not None}
    return make_config(config_cls, quick if use_quick else None, **explicit)


def main(module_name: str) -> dict[str, float]:
    """Entry point shared by the demos: parse flags, run, print the headline metrics."""
    module = sys.modules[module_name]
    doc = (module.__doc__ or "").strip()
    config = parse_config(module.Config, getattr(module, "QUICK", None), description=doc)
    metrics = module.run(config)
    print(format_metrics(metrics))
    return metrics


def format_metrics(metrics: Mapping[str, float]) -> str:
    return "  ".join(f"{name} {_short(value)}" for name, value in metrics.items())


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Prints `step 40/200  loss 0.31  12.5 step/s  left 13s` at most every `every` seconds.

    Call `update(step, loss=...)` inside the loop; the last step always prints.
    """

    def __init__(self, total: int, label: str = "step", every: float = 2.0, stream=None):
        self.total = total
        self.label = label
        self.every = every
        self.stream = stream if stream is not None else sys.stdout
        self.start = time.perf_counter()
        self.last_print = -float("inf")

    def update(self, step: int, **metrics: float) -> None:
        now = time.perf_counter()
        if now - self.last_print < self.every and step < self.total:
            return
        self.last_print = now
        elapsed = now - self.start
        rate = step / elapsed if elapsed > 0 else 0.0
        left = (self.total - step) / rate if rate > 0 else 0.0
        parts = [f"{self.label} {step}/{self.total}"]
        parts += [f"{name} {_short(value)}" for name, value in metrics.items()]
        parts += [f"{rate:.3g} {self.label}/s", f"left {_duration(left)}"]
        print("  ".join(parts), file=self.stream, flush=True)
