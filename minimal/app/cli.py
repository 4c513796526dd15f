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
``--quick --epochs 5`` means "the quick preset, but 5 epochs". A demo with other settings worth
naming adds ``PRESETS = {"mujoco": {...}}``: ``--preset mujoco`` then applies those after
--quick's and before the explicit flags, so a flag given always wins, even one that names the
plain default value (``--preset mujoco --obs-norm false``).

A Config checks its own fields in ``__post_init__`` with `validate`, so a bad value is refused
the moment a Config is made, whoever makes it (the command line, run_all.py, a test)::

    def __post_init__(self):
        cli.validate(self, counts=("epochs", "batch_size"), positive=("lr",),
                     fractions=("dropout",), choices={"model": ("conv", "mlp")})

`main` turns a refused value into a usage error (exit code 2, one line, no traceback) before
any work starts, and writes the run record (``run.json``) beside the demo's figures.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import math
import os
import sys
import textwrap
import time
import tokenize
from collections.abc import Mapping, Sequence
from typing import Any

from minimal.errors import ConfigError, UserError


def field_comments(config_cls: type) -> dict[str, str]:
    """Map each field of a dataclass to the comment written after it in the source.

    A comment may go on over the next lines, as lines holding only a comment right below the
    field; they are joined into one. Comments are found with `tokenize`, so a ``#`` inside a
    string default (``color: str = "#fff"``) is not taken for one.
    """
    try:
        source = textwrap.dedent(inspect.getsource(config_cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comment_at: dict[int, str] = {}  # line number -> the comment on it
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comment_at[token.start[0]] = token.string[1:].strip()
    except (tokenize.TokenError, SyntaxError):
        return {}
    comments: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            number = node.end_lineno
            if number not in comment_at:
                continue
            parts = [comment_at[number]]
            # continuation: the following lines that hold nothing but a comment
            while number + 1 in comment_at and lines[number].lstrip().startswith("#"):
                number += 1
                parts.append(comment_at[number])
            comments[node.target.id] = " ".join(part for part in parts if part)
    return comments


def _flag(name: str) -> str:
    return f"{name} (--{name.replace('_', '-')})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _values(config: Any, name: str) -> tuple:
    """A field's value as a tuple (a tuple field is checked element by element)."""
    value = getattr(config, name)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def validate(config: Any, *, counts: Sequence[str] = (), whole: Sequence[str] = (),
             non_negative: Sequence[str] = (), positive: Sequence[str] = (),
             fractions: Sequence[str] = (),
             finite: Sequence[str] = (), choices: Mapping[str, Sequence[Any]] | None = None,
             nonempty: Sequence[str] = ()) -> None:
    """Refuse a Config whose fields are out of their domain, with a ConfigError naming the
    field, its flag, the value and what was expected. Tuple fields are checked per element.

    counts: whole numbers >= 1. whole: whole numbers >= 0 (a seed, a count where 0 means
    "skip"). non_negative: finite numbers >= 0. positive: finite numbers > 0. fractions:
    numbers in [0, 1]. finite: any finite number. choices: field -> allowed values (for a
    tuple field every element must be allowed, and it may not be empty). nonempty: tuple
    fields that need at least one value (the other kinds accept an empty tuple).
    Every Config's ``out_dir`` must name a folder: an empty one would scatter the figures and
    run.json over the folder the run was started from.
    """
    def refuse(name: str, value: Any, expected: str) -> None:
        raise ConfigError(f"{_flag(name)} must be {expected}, got {value!r}")

    if isinstance(getattr(config, "out_dir", None), str) and not config.out_dir.strip():
        refuse("out_dir", config.out_dir, "a folder for the figures and run.json")

    for name in nonempty:
        if not _values(config, name):
            refuse(name, getattr(config, name), "one or more values, comma-separated")
    for names, least in ((counts, 1), (whole, 0)):
        for name in names:
            for value in _values(config, name):
                if not (isinstance(value, int) and not isinstance(value, bool)) or value < least:
                    refuse(name, getattr(config, name), f"a whole number >= {least}")
    checks = [(non_negative, "a finite number >= 0", lambda v: v >= 0),
              (positive, "a finite number > 0", lambda v: v > 0),
              (fractions, "a number from 0 to 1", lambda v: 0 <= v <= 1),
              (finite, "a finite number", lambda v: True)]
    for names, expected, in_domain in checks:
        for name in names:
            for value in _values(config, name):
                if not _is_number(value) or not math.isfinite(value) or not in_domain(value):
                    refuse(name, getattr(config, name), expected)
    for name, allowed in (choices or {}).items():
        values = _values(config, name)
        if not values:
            refuse(name, getattr(config, name), f"one or more of {', '.join(map(str, allowed))}")
        for value in values:
            if value not in allowed:
                refuse(name, getattr(config, name), f"one of {', '.join(map(str, allowed))}")


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
        return lambda text: _parse_tuple(text, kind)
    return str


def _parse_tuple(text: str, kind: type) -> tuple:
    """"4,5,6" -> (4, 5, 6); an empty string (``--sizes ""``) is the empty tuple."""
    if not text.strip():
        return ()
    try:
        return tuple(kind(part.strip()) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {kind.__name__} values (or \"\" for none), "
            f"got {text!r}") from None


def build_parser(config_cls: type, description: str | None = None,
                 presets: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> argparse.ArgumentParser:
    """An ArgumentParser with one flag per Config field, a --quick switch and, if the demo names
    presets, --preset NAME."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="the quick preset (about a minute on 2 cores)"
    )
    if presets:
        parser.add_argument(
            "--preset", choices=sorted(presets), default=None,
            help="named settings that replace the defaults (and --quick's); a flag given "
                 "explicitly still wins")
    comments = field_comments(config_cls)
    for field in dataclasses.fields(config_cls):
        default = _default_of(field)
        flag = "--" + field.name.replace("_", "-")
        # a bool flag alone means true (--resume), and still takes a value (--resume false)
        alone = {"nargs": "?", "const": True} if isinstance(default, bool) else {}
        parser.add_argument(
            flag,
            dest=field.name,
            type=_flag_type(default),
            default=None,
            **alone,
            metavar=type(default).__name__.upper(),
            # argparse %-formats help strings: a literal % must be doubled
            help=f"{comments.get(field.name, '')} (default: {default!r})".replace("%", "%%"),
        )
    return parser


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    raise TypeError(f"Config field {field.name!r} needs a default value")


def make_config(config_cls: type, quick: Mapping[str, Any] | None = None, **overrides: Any):
    """Config with a preset's values applied (if given: the quick preset, a named one, or both
    merged), then the explicit overrides."""
    values = dict(quick or {})
    values.update(overrides)
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(values) - names
    if unknown:
        raise TypeError(f"{config_cls.__qualname__} has no field(s) {sorted(unknown)}")
    return config_cls(**values)


def config_from_args(parser: argparse.ArgumentParser, config_cls: type,
                     quick: Mapping[str, Any] | None, argv: Sequence[str] | None,
                     presets: Mapping[str, Mapping[str, Any]] | None = None):
    """Defaults, then --quick's values, then --preset's, then the flags given."""
    args = vars(parser.parse_args(argv))
    base = dict(quick or {}) if args.pop("quick") else {}
    preset = args.pop("preset", None) if presets else None  # only then is --preset ours
    if preset is not None:
        base.update(presets[preset])
    explicit = {name: value for name, value in args.items() if value is not None}
    return make_config(config_cls, base, **explicit)


def parse_config(
    config_cls: type,
    quick: Mapping[str, Any] | None = None,
    argv: Sequence[str] | None = None,
    description: str | None = None,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
):
    """Parse the command line into a Config: defaults, then --quick, then --preset NAME (one
    of `presets`, if given), then explicit flags. A value the Config refuses exits with a
    usage error (code 2), as a malformed flag does."""
    parser = build_parser(config_cls, description, presets)
    try:
        return config_from_args(parser, config_cls, quick, argv, presets)
    except ConfigError as error:
        parser.error(str(error))


def main(module_name: str, argv: Sequence[str] | None = None) -> dict[str, float]:
    """Entry point shared by the demos: parse flags, run, print the headline metrics.

    A setting out of its domain is a usage error (exit 2); any other UserError (a bad data
    file, a missing checkpoint, a non-finite loss) prints its one-line message and exits 1.
    Bugs keep their traceback. The run is recorded in ``out_dir/run.json`` (training.RunRecord).
    """
    from minimal.app.training import RunRecord  # the record needs nn/optim; keep `cli` light
    from minimal.kernels.process import tune_process

    tune_process()  # BLAS threads' timeout, malloc: see minimal/kernels/process.py
    module = sys.modules[module_name]
    doc = (module.__doc__ or "").strip()
    presets = getattr(module, "PRESETS", None)
    parser = build_parser(module.Config, doc, presets)
    try:
        config = config_from_args(parser, module.Config, getattr(module, "QUICK", None), argv,
                                  presets)
    except ConfigError as error:
        parser.error(str(error))
    # run as `python -m minimal.demos.NAME` the module is __main__; its spec has the real name
    spec = getattr(module, "__spec__", None)
    full_name = spec.name if module_name == "__main__" and spec is not None else module_name
    name = full_name.rsplit(".", 1)[-1]
    try:
        with RunRecord(name, config) as record:
            metrics = module.run(config)
            record.metrics = metrics
    except UserError as error:
        print(f"{name}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # Ctrl-C: where the run got to and how to go on, in one line
        print(f"\n{name}: {interrupted_message(name, config, argv)}", file=sys.stderr)
        raise SystemExit(130) from None
    print(format_metrics(metrics))
    return metrics


def interrupted_message(name: str, config: Any, argv: Sequence[str] | None) -> str:
    """What a run stopped by Ctrl-C leaves: its checkpoint (and how far it got) and the command
    that resumes it, or that there is nothing to resume."""
    from minimal.app.training import CHECKPOINT_NAME, checkpoint_progress

    if not hasattr(config, "resume"):
        return "interrupted (this demo keeps no checkpoint: run it again to start over)"
    path = os.path.join(config.out_dir, CHECKPOINT_NAME)
    progress = checkpoint_progress(path)
    if progress is None:
        return "interrupted before its first checkpoint; nothing to resume"
    args = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m minimal.demos." + name, *args] +
                       ([] if "--resume" in args else ["--resume"]))
    return f"interrupted; the checkpoint at {path} ({progress}) is kept: resume with {command}"


def format_metrics(metrics: Mapping[str, float]) -> str:
    return "  ".join(f"{name} {_short(value)}" for name, value in metrics.items())


def _short(value: Any) -> str:
    """A metric for the summary line; NaN (a metric that does not apply to this run) is n/a."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
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

    Call `update(step, loss=...)` inside the loop; the last step always prints. A resumed run
    passes the step it resumed from as `first`, so the rate counts only this run's steps.
    """

    def __init__(self, total: int, label: str = "step", every: float = 2.0, stream=None,
                 first: int = 0):
        self.total = total
        self.label = label
        self.every = every
        self.stream = stream if stream is not None else sys.stdout
        self.first = first
        self.start = time.perf_counter()
        self.last_print = -float("inf")

    def update(self, step: int, **metrics: float) -> None:
        now = time.perf_counter()
        if now - self.last_print < self.every and step < self.total:
            return
        self.last_print = now
        elapsed = now - self.start
        rate = (step - self.first) / elapsed if elapsed > 0 else 0.0
        left = (self.total - step) / rate if rate > 0 else 0.0
        parts = [f"{self.label} {step}/{self.total}"]
        parts += [f"{name} {_short(value)}" for name, value in metrics.items()]
        parts += [f"{rate:.3g} {self.label}/s", f"left {_duration(left)}"]
        print("  ".join(parts), file=self.stream, flush=True)
