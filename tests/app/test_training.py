"""training.py: a resumed run equals an uninterrupted one bit for bit; the NaN guard; the record."""

import json
from dataclasses import dataclass

import numpy as np
import pytest

from minimal import functional as F
from minimal import nn, optim
from minimal.app import training
from minimal.autograd import Tensor
from minimal.errors import CheckpointError, NonFiniteLossError, UserError


@dataclass
class Config:
    seed: int = 0
    steps: int = 6
    lr: float = 1e-2
    resume: bool = False
    out_dir: str = "outputs/t"


def make(config):
    rng = np.random.default_rng(config.seed)
    model = nn.Sequential(nn.Linear(3, 8, rng=rng), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Dropout(0.3, rng=rng), nn.Linear(8, 1, rng=rng))
    adam = optim.Adam(model.parameters(), lr=config.lr)
    state = training.TrainingState("toy", config, {"model": model}, {"adam": adam}, rng)
    return rng, model, adam, state


def train(config, stop_after=None):
    """Steps 0..steps-1, a checkpoint after each; stop_after=k returns after k steps."""
    rng, model, adam, state = make(config)
    if config.resume:
        state.resume()
    for step in range(state.counters.get("step", 0), config.steps):
        x = rng.standard_normal((16, 3)).astype(np.float32)  # the data come from the same rng
        loss = F.mse_loss(model(Tensor(x)), Tensor(x[:, :1] * 2))
        state.check_finite(f"step {step}", loss=loss)
        adam.zero_grad()
        loss.backward()
        adam.step()
        state.history.setdefault("loss", []).append(float(loss.data))
        state.counters["step"] = step + 1
        state.save()
        if stop_after is not None and step + 1 == stop_after:
            return model, state
    return model, state


def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path):
    whole, whole_state = train(Config(out_dir=str(tmp_path / "a")))
    train(Config(out_dir=str(tmp_path / "b")), stop_after=3)
    resumed, resumed_state = train(Config(out_dir=str(tmp_path / "b"), resume=True))
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert np.array_equal(a, b), name  # batch-norm running statistics included
    assert resumed_state.history["loss"] == whole_state.history["loss"]


def test_resume_refuses_other_settings_naming_them(tmp_path):
    train(Config(out_dir=str(tmp_path)), stop_after=2)
    with pytest.raises(CheckpointError, match=r"lr \(checkpoint 0.01, now 0.02\)"):
        train(Config(out_dir=str(tmp_path), lr=2e-2, resume=True))


def test_resume_without_a_checkpoint_says_how(tmp_path):
    with pytest.raises(CheckpointError, match="start the run without --resume"):
        train(Config(out_dir=str(tmp_path), resume=True))


def test_a_checkpoint_of_another_model_changes_nothing(tmp_path):
    train(Config(out_dir=str(tmp_path)), stop_after=1)
    rng = np.random.default_rng(1)
    other = nn.Sequential(nn.Linear(3, 8, rng=rng), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Dropout(0.3, rng=rng), nn.Linear(8, 2, rng=rng))  # 2 outputs
    adam = optim.Adam(other.parameters())
    before = other.state_dict()
    state = training.TrainingState("toy", Config(out_dir=str(tmp_path)), {"model": other},
                                   {"adam": adam}, rng)
    with pytest.raises(CheckpointError, match="does not fit"):
        state.resume()
    for name, value in other.state_dict().items():
        assert np.array_equal(value, before[name]), name


def test_nan_stops_before_the_step_and_keeps_the_checkpoint(tmp_path):
    config = Config(out_dir=str(tmp_path))
    model, state = train(config, stop_after=2)
    saved = (tmp_path / "checkpoint.npz").read_bytes()
    before = model.state_dict()
    with pytest.raises(NonFiniteLossError, match=r"the kl term .* nan at epoch 3, step 7.*"
                                                 r"checkpoint .* is kept"):
        state.check_finite("epoch 3, step 7", loss=Tensor(np.float32(1.0)),
                           kl=np.array([0.0, np.nan]))
    assert (tmp_path / "checkpoint.npz").read_bytes() == saved
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())


def test_load_for_use_says_how_to_train(tmp_path):
    rng = np.random.default_rng(0)
    model = nn.Linear(2, 2, rng=rng)
    with pytest.raises(CheckpointError, match=r"python -m minimal\.demos\.toy --quick"):
        training.load_for_use(tmp_path / "none.npz", {"model": model},
                              "python -m minimal.demos.toy --quick")


def test_run_record_finished_failed_interrupted(tmp_path):
    config = Config(out_dir=str(tmp_path))
    with training.RunRecord("toy", config) as record:
        assert json.loads((tmp_path / "run.json").read_text())["status"] == "running"
        record.metrics = {"loss": 0.5, "bad": float("nan")}
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == "finished" and saved["metrics"] == {"loss": 0.5, "bad": "n/a"}
    assert saved["config"]["lr"] == 0.01 and saved["seed"] == 0 and "numpy" in saved["versions"]
    with pytest.raises(KeyboardInterrupt), training.RunRecord("toy", config):
        raise KeyboardInterrupt
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"
    with pytest.raises(ZeroDivisionError), training.RunRecord("toy", config):
        1 / 0  # noqa: B018
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == "failed" and "ZeroDivisionError" in saved["error"]


def test_run_record_refuses_an_out_dir_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        with training.RunRecord("toy", Config(out_dir=str(tmp_path / "taken"))):
            pass
