"""What every long training run needs, written once: checkpoints, exact resume, a NaN guard,
and a record of the run.

    state = TrainingState("vae", config, modules={"model": model},
                          optimizers={"adam": adam}, rng=rng)
    if config.resume:
        state.resume()                      # nets, optimisers, generator, counters, history
    for epoch in range(state.counters.get("epoch", 0), config.epochs):
        for batch in ...:
            loss = ...
            state.check_finite(f"epoch {epoch + 1}, step {step}", loss=loss, kl=kl)
            loss.backward(); adam.step()
        state.history.setdefault("train_loss", []).append(float(loss.data))
        state.counters["epoch"] = epoch + 1
        state.save()                        # atomic: out_dir/checkpoint.npz

A checkpoint is one .npz holding every module's state dict, every optimiser's state, the
generator's `bit_generator.state`, the counters, the history and the Config. The generator
state, counters and Config go in as JSON text arrays, so loading never unpickles anything.
`resume()` refuses a checkpoint written with other settings, naming the fields that differ,
and restores the generator in place, so every object holding it (a Dropout layer, a data
sampler) continues the same stream: the run goes on bit for bit as if it had never stopped,
provided the loop draws all its randomness from that generator and saves at a point where the
counters say everything about where it was (the end of an epoch, say).

`check_finite` raises NonFiniteLossError naming the demo, the place and the term, before any
optimiser step or checkpoint uses the value; the last good checkpoint stays as it was.

`RunRecord` writes ``run.json`` beside a demo's figures: its Config, seed, library versions,
metrics, and whether it finished, failed or was interrupted, so figures from two runs mixed in
one folder are visible. The command line (cli.main) and run_all.py wrap every demo in one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from minimal.app.files import atomic_file, check_parents, check_writable, folder_lock, load_arrays
from minimal.errors import CheckpointError, NonFiniteLossError, OutputError
from minimal.nn import Module

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT = "minimal-checkpoint-1"
# Fields that may differ between a checkpoint's run and the run resuming it: the checkpoint is
# found in the out_dir given, however it is spelled or wherever the folder was moved.
ALWAYS_MAY_DIFFER = ("resume", "out_dir")
# Settings that name files: the same file spelled another way (relative, absolute) is the same.
PATH_FIELDS = ("data",)


def config_as_dict(config: Any) -> dict[str, Any]:
    """A Config as plain JSON values (tuples become lists), for comparison and storage."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _text(value: Any) -> np.ndarray:
    return np.array(json.dumps(value))


def _from_text(array: np.ndarray, what: str, path: Path) -> Any:
    try:
        return json.loads(str(array[()]))
    except (ValueError, TypeError):
        raise CheckpointError(f"{path}: the {what} stored in the checkpoint is not readable "
                              "JSON; the file is damaged") from None


class TrainingState:
    """The nets, optimisers, generator(s), counters and history of one training run.

    modules / optimizers: name -> object (names are the checkpoint's keys; keep them stable).
    rng: the run's generator, or a mapping name -> generator when there are several.
    path: the checkpoint file (default ``config.out_dir/checkpoint.npz``).
    may_differ: Config fields a resumed run may change (e.g. ("epochs",) to train on longer).
    length: (Config field, counter) saying how long the run is and how far it got, e.g.
        ("epochs", "epoch"): the field may differ on resume (more trains on, the same
        evaluates the model as it is), but less than the checkpoint has done is refused. A
        counter "*" stands for the largest counter (several models trained one after another).
    """

    def __init__(self, demo: str, config: Any, modules: Mapping[str, Module],
                 optimizers: Mapping[str, Any], rng: np.random.Generator | Mapping[str, Any],
                 path: str | os.PathLike | None = None, may_differ: tuple[str, ...] = (),
                 length: tuple[str, str] | None = None):
        self.demo = demo
        self.length = length
        self.config = config
        self.modules = dict(modules)
        self.optimizers = dict(optimizers)
        self.rngs = {"rng": rng} if isinstance(rng, np.random.Generator) else dict(rng)
        self.path = Path(path) if path is not None else Path(config.out_dir) / CHECKPOINT_NAME
        # the run's length may change on resume: longer trains on, the same evaluates
        self.may_differ = tuple(may_differ) + ALWAYS_MAY_DIFFER + (length[:1] if length else ())
        self.counters: dict[str, int] = {}
        self.history: dict[str, list] = {}
        self.saved = False  # whether this run has written a checkpoint yet

    # --- saving --------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Everything in the checkpoint, as name -> array."""
        arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT), "demo": np.array(self.demo)}
        for name, module in self.modules.items():
            for key, value in module.state_dict().items():
                arrays[f"module/{name}/{key}"] = value
        for name, optimizer in self.optimizers.items():
            for key, value in optimizer.state_dict().items():
                arrays[f"optimizer/{name}/{key}"] = np.asarray(value)
        arrays["rng"] = _text({name: g.bit_generator.state for name, g in self.rngs.items()})
        arrays["counters"] = _text(self.counters)
        arrays["config"] = _text(config_as_dict(self.config))
        for name, values in self.history.items():
            arrays[f"history/{name}"] = np.asarray(values)
        return arrays

    def save(self) -> Path:
        """Write the checkpoint atomically: the old file stays whole until the new one is (a
        full disk is an OutputError, one line, the previous checkpoint intact)."""
        arrays = self.arrays()
        with atomic_file(self.path) as file:
            np.savez(file, **arrays)
        self.saved = True
        return self.path

    # --- resuming ------------------------------------------------------------------------
    def resume(self) -> None:
        """Load the checkpoint into the nets, optimisers and generators, or raise
        CheckpointError saying why not; on any error nothing is changed."""
        if not self.path.is_file():
            raise CheckpointError(
                f"--resume: no checkpoint at {self.path}; start the run without --resume "
                "(it writes one as it trains)")
        arrays = _read_checkpoint(self.path, self.demo)
        self._check_config(_from_text(arrays["config"], "Config", self.path))
        rng_states = _from_text(arrays["rng"], "generator state", self.path)
        counters = _from_text(arrays["counters"], "counters", self.path)
        self._check_length(counters)
        if set(rng_states) != set(self.rngs):
            raise CheckpointError(f"{self.path}: holds generators {sorted(rng_states)}, this run "
                                  f"has {sorted(self.rngs)}")
        # Load every piece, and put everything back as it was if any piece is refused.
        before = {name: m.state_dict() for name, m in self.modules.items()}
        before_opt = {name: o.state_dict() for name, o in self.optimizers.items()}
        try:
            for name, module in self.modules.items():
                module.load_state_dict(_section(arrays, f"module/{name}/", self.path))
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(_section(arrays, f"optimizer/{name}/", self.path))
        except (KeyError, ValueError, TypeError) as error:
            for name, module in self.modules.items():
                module.load_state_dict(before[name])
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(before_opt[name])
            raise CheckpointError(f"{self.path}: does not fit this run's model ({error})") \
                from None
        for name, generator in self.rngs.items():
            generator.bit_generator.state = rng_states[name]  # in place: every holder follows
        self.counters = {key: int(value) for key, value in counters.items()}
        self.history = {key[len("history/"):]: list(value) for key, value in arrays.items()
                        if key.startswith("history/")}
        self.saved = True

    def _check_config(self, saved: dict[str, Any]) -> None:
        current = config_as_dict(self.config)
        differ = sorted(name for name in set(saved) | set(current)
                        if name not in self.may_differ
                        and not _same_setting(name, saved.get(name), current.get(name)))
        if differ:
            details = ", ".join(f"{name} (checkpoint {saved.get(name)!r}, now "
                                f"{current.get(name)!r})" for name in differ)
            raise CheckpointError(f"{self.path}: was written with other settings: {details}; "
                                  "resume with the same flags, or start afresh in another "
                                  "--out-dir")

    def _check_length(self, counters: Mapping[str, Any]) -> None:
        if self.length is None:
            return
        field, counter = self.length
        done = max(map(int, counters.values()), default=0) if counter == "*" else \
            int(counters.get(counter, 0))
        asked = getattr(self.config, field)
        if asked < done:
            flag = "--" + field.replace("_", "-")
            raise CheckpointError(
                f"{self.path}: has trained {done} {field} already and {flag} {asked} asks for "
                f"fewer; resume with {flag} {done} to evaluate the model as it is, or more to "
                "train on")

    # --- the NaN guard -------------------------------------------------------------------
    def check_finite(self, where: str, **terms: Any) -> None:
        """Raise NonFiniteLossError if any term (float, array or Tensor) is NaN or inf.

        Call it after the forward pass and before backward/step, so no update and no
        checkpoint ever sees the broken value.
        """
        for term, value in terms.items():
            data = getattr(value, "data", value)
            if not np.all(np.isfinite(data)):
                shown = float(np.asarray(data).ravel()[~np.isfinite(np.asarray(data).ravel())][0])
                kept = (f"the last good checkpoint {self.path} is kept (continue with --resume)"
                        if self.saved else "no checkpoint had been written yet")
                raise NonFiniteLossError(
                    f"the {term} term of the loss is {shown} at {where}; training stopped "
                    f"before any update used it, and {kept}")


def checkpoint_progress(path: str | os.PathLike) -> str | None:
    """How far the checkpoint at `path` got, as its counters ("epoch 3"), or None when there is
    no readable checkpoint there. Reads only the counters."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            counters = json.loads(str(arrays["counters"][()]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return ", ".join(f"{name} {value}" for name, value in counters.items()) or "step 0"


def _same_setting(name: str, saved: Any, current: Any) -> bool:
    if saved == current:
        return True
    if name in PATH_FIELDS and isinstance(saved, str) and isinstance(current, str) \
            and saved and current:
        return os.path.realpath(saved) == os.path.realpath(current)
    return False


def _read_checkpoint(path: Path, demo: str | None) -> dict[str, np.ndarray]:
    """The arrays of a training checkpoint of `demo`, or a CheckpointError saying in one line
    what the file is instead (damaged, not an .npz, not a checkpoint, another demo's)."""
    try:
        arrays = load_arrays(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    if str(arrays.get("format", "")) != FORMAT:
        raise CheckpointError(f"{path}: not a training checkpoint of this project "
                              f"(expected format {FORMAT!r})")
    written_by = str(arrays["demo"]) if "demo" in arrays else None
    if demo is not None and written_by is not None and written_by != demo:
        raise CheckpointError(f"{path}: is a {written_by} checkpoint, not a {demo} one; give "
                              f"{demo} its own --out-dir (or the checkpoint a {demo} run wrote)")
    return arrays


def _section(arrays: Mapping[str, np.ndarray], prefix: str, path: Path) -> dict[str, np.ndarray]:
    section = {key[len(prefix):]: value for key, value in arrays.items()
               if key.startswith(prefix)}
    if not section:
        raise CheckpointError(f"{path}: has no {prefix.rstrip('/')} (the checkpoint is from "
                              "another model)")
    return section


def load_for_use(path: str | os.PathLike, modules: Mapping[str, Module], train_command: str,
                 demo: str | None = None) -> dict[str, Any]:
    """Load only the nets of `demo`'s training checkpoint, for an interactive entry point
    (colorize, serve, chat); `path` may be the file or the folder holding it. Returns the
    checkpoint's Config as a dict. Anything wrong is one line: no checkpoint (saying which
    command trains one), a damaged file, another demo's checkpoint, another model's shapes."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise CheckpointError(f"no trained model at {path}; train one first with: "
                              f"{train_command}")
    arrays = _read_checkpoint(path, demo)
    try:
        for name, module in modules.items():
            module.load_state_dict(_section(arrays, f"module/{name}/", path))
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: does not fit this model ({error}); was it trained "
                              "with other settings?") from None
    return _from_text(arrays["config"], "Config", path)


# ===== the run record ======================================================================

def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("scipy", "gymnasium", "matplotlib", "PIL"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return versions


def _finite_or_text(value: Any) -> Any:
    """A metric as JSON: a number, "inf" / "-inf" (never reached), or "n/a" for NaN."""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "n/a"
        return float(value) if math.isfinite(value) else str(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


# The names of what a demo writes into its out_dir: a folder there under such a name would
# fail the run at its first save, so it is refused before any work.
OUTPUT_SUFFIXES = (".png", ".gif", ".npz", ".json", ".txt", ".md")


class RunRecord:
    """``with RunRecord("vae", config) as record: record.metrics = run(config)``

    Before any work: checks that out_dir is a folder where run.json, the checkpoint and the
    figures can be written (a folder named like one of them is refused), and takes the folder's
    lock, so that a second run into the same out_dir refuses to start while this one lives
    (files.folder_lock). Writes ``out_dir/run.json`` at the start (status "running") and again
    at the end: "finished" with the metrics, "interrupted" (Ctrl-C) or "failed" with the
    error's message. A metric that is NaN (not applicable to this run) is recorded as "n/a".
    """

    def __init__(self, demo: str, config: Any):
        self.demo = demo
        self.config = config
        self.path = Path(config.out_dir) / "run.json"
        self.metrics: Mapping[str, Any] = {}
        self.start = 0.0
        self._lock = None

    def write(self, status: str, error: str | None = None) -> None:
        record = {"demo": self.demo, "status": status, "config": config_as_dict(self.config),
                  "seed": getattr(self.config, "seed", None), "versions": library_versions(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.start_wall)),
                  "seconds": round(time.perf_counter() - self.start, 1),
                  "metrics": {k: _finite_or_text(v) for k, v in self.metrics.items()}}
        if error:
            record["error"] = error
        text = json.dumps(record, indent=2) + "\n"
        with atomic_file(self.path) as file:
            file.write(text.encode())

    def __enter__(self) -> RunRecord:  # noqa: PYI034 (Self needs Python 3.11)
        self.start, self.start_wall = time.perf_counter(), time.time()
        out_dir = Path(self.config.out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputError(f"--out-dir {out_dir} is a file; expected a folder for the "
                              "figures")
        check_parents(out_dir, f"--out-dir {out_dir}")
        check_writable(self.path)
        if out_dir.is_dir():
            for entry in sorted(out_dir.iterdir()):
                if entry.suffix in OUTPUT_SUFFIXES and entry.is_dir():
                    raise OutputError(f"{entry}: is a folder, where the run writes a file; "
                                      "move it away or choose another --out-dir")
        self._lock = folder_lock(out_dir)
        self._lock.__enter__()
        try:
            self.write("running")
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if kind is None:
                self.write("finished")
            elif issubclass(kind, KeyboardInterrupt):
                self.write("interrupted")
            else:
                self.write("failed", f"{kind.__name__}: {error}")
        except OSError:
            if kind is None:
                raise  # the run's own outcome matters more than its record
        finally:
            self._lock.__exit__(None, None, None)
