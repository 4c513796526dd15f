"""The trained demos' second surface, through the shared machinery every demo goes through
(cli.main, training.TrainingState, RunRecord, files): each case is a user's action and the
one line they see; nothing saved is lost."""

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from minimal import nn, optim
from minimal.app import cli, files, training
from minimal.errors import BusyError, CheckpointError, OutputError

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Config:
    seed: int = 0
    epochs: int = 3  # epochs to train
    fail_at: int = 0  # raise a non-finite loss at this epoch (0: never)
    resume: bool = False  # continue from out_dir/checkpoint.npz
    out_dir: str = "outputs/toy"  # where run.json and the checkpoint go


def toy_run(config: Config, demo: str = "toy") -> dict:
    """A tiny trained demo: one Linear layer, a checkpoint after every epoch."""
    rng = np.random.default_rng(config.seed)
    model = nn.Linear(2, 1, rng=rng)
    adam = optim.Adam(model.parameters())
    state = training.TrainingState(demo, config, {"model": model}, {"adam": adam}, rng,
                                   length=("epochs", "epoch"))
    if config.resume:
        state.resume()
    for epoch in range(state.counters.get("epoch", 0), config.epochs):
        loss = float("nan") if epoch + 1 == config.fail_at else 1.0 / (epoch + 1)
        state.check_finite(f"epoch {epoch + 1}", loss=loss)
        state.counters["epoch"] = epoch + 1
        state.save()
    return {"loss": 1.0, "copypasta_exact": float("nan")}


@pytest.fixture
def demo(monkeypatch):
    """python -m minimal.demos.toy, in this process: (argv) -> (exit code, stderr lines)."""
    module = types.ModuleType("minimal.demos.toy")
    module.__doc__ = "A toy trained demo."
    module.Config, module.run, module.QUICK = Config, toy_run, {}
    monkeypatch.setitem(sys.modules, "minimal.demos.toy", module)

    def run(*argv, capsys=None):
        try:
            cli.main("minimal.demos.toy", list(argv))
        except SystemExit as stop:
            return stop.code
        return 0

    return run


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ===== where the run writes ===================================================================

def test_a_folder_where_the_checkpoint_goes_is_refused_before_any_work(tmp_path, demo, capsys):
    (tmp_path / "checkpoint.npz").mkdir()
    assert demo("--out-dir", str(tmp_path)) == 1
    err = lines(capsys.readouterr().err)
    assert err == [f"toy: {tmp_path / 'checkpoint.npz'}: is a folder, where the run writes a "
                   "file; move it away or choose another --out-dir"]
    assert not (tmp_path / "run.json").exists()  # refused before the run started


def test_a_folder_named_like_a_figure_is_refused_before_any_work(tmp_path, demo, capsys):
    (tmp_path / "samples.png").mkdir()
    assert demo("--out-dir", str(tmp_path)) == 1
    assert "samples.png: is a folder, where the run writes a file" in capsys.readouterr().err


def test_a_full_disk_while_saving_is_one_line_and_the_last_checkpoint_survives(
        tmp_path, demo, capsys, monkeypatch):
    assert demo("--out-dir", str(tmp_path), "--epochs", "2") == 0
    before = (tmp_path / "checkpoint.npz").read_bytes()

    def disk_full(file, **arrays):  # the disk fills up while the checkpoint is written
        file.write(b"PK\x03\x04 part of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    assert demo("--out-dir", str(tmp_path), "--epochs", "4", "--resume") == 1
    err = lines(capsys.readouterr().err)
    assert len(err) == 1 and "No space left on device" in err[0]
    assert err[0].startswith(f"toy: {tmp_path / 'checkpoint.npz'}: could not be written")
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_atomic_file_flushes_and_syncs_before_the_rename(tmp_path, monkeypatch):
    """A crash right after the rename must find the whole new file: fsync comes first."""
    order = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append("replace"),
                                                     real_replace(a, b))[1])
    with files.atomic_file(tmp_path / "f.bin") as file:
        file.write(b"data")
    assert order == ["fsync", "replace"]


# ===== checkpoints that cannot be used =========================================================

@pytest.mark.parametrize("content, what", [
    (b"", "it is empty"),
    (b"PK\x03\x04 truncated", "damaged"),
])
def test_a_damaged_checkpoint_is_one_line_wherever_it_is_loaded(tmp_path, demo, capsys,
                                                                 content, what):
    (tmp_path / "checkpoint.npz").write_bytes(content)
    assert demo("--out-dir", str(tmp_path), "--resume") == 1
    err = lines(capsys.readouterr().err)
    assert len(err) == 1 and what in err[0] and str(tmp_path / "checkpoint.npz") in err[0]
    model = nn.Linear(2, 1)
    with pytest.raises(CheckpointError, match=what):  # --colorize, --serve, --chat load so
        training.load_for_use(tmp_path, {"model": model}, "train it", demo="toy")


def test_another_demos_checkpoint_is_named_as_such(tmp_path, demo, capsys):
    config = Config(out_dir=str(tmp_path), epochs=1)
    toy_run(config, demo="gan")
    assert demo("--out-dir", str(tmp_path), "--resume") == 1
    assert lines(capsys.readouterr().err) == [
        f"toy: {tmp_path / 'checkpoint.npz'}: is a gan checkpoint, not a toy one; give toy its "
        "own --out-dir (or the checkpoint a toy run wrote)"]
    with pytest.raises(CheckpointError, match="is a gan checkpoint, not a toy one"):
        training.load_for_use(tmp_path, {"model": nn.Linear(2, 1)}, "train it", demo="toy")


def test_checkpoint_given_as_its_folder_is_found_inside(tmp_path):
    toy_run(Config(out_dir=str(tmp_path), epochs=1))
    saved = training.load_for_use(tmp_path, {"model": nn.Linear(2, 1)}, "train it", demo="toy")
    assert saved["epochs"] == 1


# ===== resuming ==============================================================================

def test_resume_finds_the_run_however_the_folder_is_spelled(tmp_path, demo, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert demo("--out-dir", "runs/a", "--epochs", "1") == 0
    assert demo("--out-dir", str(tmp_path / "runs" / "a"), "--epochs", "2", "--resume") == 0
    (tmp_path / "moved").mkdir()
    (tmp_path / "runs" / "a").rename(tmp_path / "moved" / "a")
    assert demo("--out-dir", "moved/a/", "--epochs", "3", "--resume") == 0
    assert training.checkpoint_progress("moved/a/checkpoint.npz") == "epoch 3"


def test_resume_with_fewer_epochs_than_done_is_refused_and_the_same_evaluates(tmp_path, demo,
                                                                              capsys):
    assert demo("--out-dir", str(tmp_path), "--epochs", "3") == 0
    assert demo("--out-dir", str(tmp_path), "--epochs", "2", "--resume") == 1
    assert lines(capsys.readouterr().err)[-1] == (
        f"toy: {tmp_path / 'checkpoint.npz'}: has trained 3 epochs already and --epochs 2 asks "
        "for fewer; resume with --epochs 3 to evaluate the model as it is, or more to train on")
    assert demo("--out-dir", str(tmp_path), "--epochs", "3", "--resume") == 0


# ===== the record and the summary ================================================================

def test_a_nan_loss_names_the_demo_once(tmp_path, demo, capsys):
    assert demo("--out-dir", str(tmp_path), "--fail-at", "2") == 1
    err = lines(capsys.readouterr().err)
    assert err == [f"toy: the loss term of the loss is nan at epoch 2; training stopped before "
                   f"any update used it, and the last good checkpoint {tmp_path / 'checkpoint.npz'}"
                   " is kept (continue with --resume)"]


def test_a_metric_that_does_not_apply_is_n_a_never_nan(tmp_path, demo, capsys):
    assert demo("--out-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "copypasta_exact n/a" in out and "nan" not in out
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["metrics"]["copypasta_exact"] == "n/a"


# ===== two runs, one folder ===================================================================

def test_a_second_run_into_a_folder_in_use_refuses_to_start(tmp_path, demo, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom minimal.app.files import folder_lock\n"
         "with folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)",
         str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert demo("--out-dir", str(tmp_path)) == 1
        assert lines(capsys.readouterr().err) == [
            f"toy: --out-dir {tmp_path} is in use by another run (process {holder.pid}); wait "
            "for it to finish, or choose another --out-dir"]
    finally:
        holder.kill()
        holder.wait()
    # its owner is gone: the lock is stale, the next run takes it over and releases it
    assert demo("--out-dir", str(tmp_path)) == 0
    assert not (tmp_path / files.LOCK_NAME).exists()


def test_a_lock_whose_pid_was_reused_by_another_process_is_stale(tmp_path):
    (tmp_path / files.LOCK_NAME).write_text(f"{os.getppid()} 1\n")  # alive, but started later
    with files.folder_lock(tmp_path):
        pass
    with pytest.raises(BusyError):
        (tmp_path / files.LOCK_NAME).write_text(f"{os.getppid()}\n")  # no start time: trusted
        with files.folder_lock(tmp_path):
            pass


# ===== Ctrl-C ================================================================================

def test_ctrl_c_while_training_is_one_line_with_the_resume_command(tmp_path, interruptible):
    """A real demo, interrupted once its first checkpoint is written: exit 130, one line, and
    the run.json says interrupted."""
    flags = ["--quick", "--train-size", "300", "--test-size", "100", "--epochs", "1000",
             "--out-dir", str(tmp_path)]
    command = [sys.executable, "-m", "minimal.demos.deconvnet", *flags]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=interruptible)
    try:
        deadline = time.monotonic() + 300
        while training.checkpoint_progress(tmp_path / "checkpoint.npz") is None:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    last = lines(err)[-1]
    assert last.startswith(f"deconvnet: interrupted; the checkpoint at "
                           f"{tmp_path / 'checkpoint.npz'} (epoch ")
    assert last.endswith("is kept: resume with python -m minimal.demos.deconvnet "
                         + " ".join(flags) + " --resume")
    assert "Traceback" not in err
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"
    assert not (tmp_path / files.LOCK_NAME).exists()


def test_writing_over_a_file_where_a_folder_is_needed_is_refused(tmp_path):
    (tmp_path / "outputs").write_text("not a folder")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        files.check_writable(tmp_path / "outputs" / "run" / "run.json")
