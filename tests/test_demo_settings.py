"""Bad settings a user can give a demo: each is refused at once, before any work, with a usage
error (exit code 2) naming the flag, the value and what was expected."""

import importlib
import pkgutil

import pytest

import minimal.demos
from minimal.app import cli

CASES = [
    ("natural_gradient", ["--steps", "0"], "steps (--steps) must be a whole number >= 1, got 0"),
    ("natural_gradient", ["--plain-lrs", ""], "plain_lrs (--plain-lrs) must be one or more"),
    ("natural_gradient", ["--tolerance", "nan"], ("tolerance (--tolerance) must be a finite "
                                                  "number > 0, got nan")),
    ("trpo", ["--total-steps", "0"], "total_steps (--total-steps) must be a whole number >= 1"),
    ("trpo", ["--steps-per-update", "0"], ("steps_per_update (--steps-per-update) must be a "
                                           "whole number >= 1")),
    ("trpo", ["--workers", "-1"], "workers (--workers) must be a whole number >= 0, got -1"),
    ("trpo", ["--env-ids", "CartPol-v1"], ("unknown environment 'CartPol-v1'; did you mean "
                                           "CartPole-v1")),
    ("trpo", ["--compare-env", "Nope-v0"], "compare_env (--compare-env): unknown environment"),
    ("trpo", ["--activation", "gelu"], "activation (--activation) must be one of relu, tanh"),
    ("trpo", ["--gae-lambda", "1.2"], "gae_lambda (--gae-lambda) must be a number from 0 to 1"),
    ("actor_critic", ["--seeds", "0"], "seeds (--seeds) must be a whole number >= 1, got 0"),
    ("actor_critic", ["--methods", "ppo"], ("methods (--methods) must be one of reinforce, "
                                            "reinforce_baseline, actor_critic, a2c, got ('ppo',)")),
    ("dqn", ["--batch-size", "0"], "batch_size (--batch-size) must be a whole number >= 1"),
    ("dqn", ["--variants", "double"], "variants (--variants) must be one of dqn, no_replay"),
    ("dqn", ["--loss", "l1"], "loss (--loss) must be one of huber, mse, got 'l1'"),
    ("dqn", ["--epsilon-end", "-0.1"], "epsilon_end (--epsilon-end) must be a number from 0"),
    ("dynamic_programming", ["--gamma", "1.5"], ("gamma (--gamma) must be a number from 0 to 1, "
                                                 "got 1.5")),
    ("dynamic_programming", ["--theta", "-1"], ("theta (--theta) must be a finite number > 0, "
                                                "got -1.0")),
    ("dynamic_programming", ["--lake-map", "5x5"], ("lake_map (--lake-map) must be one of "
                                                    "4x4, 8x8, got '5x5'")),
    ("cartpole", ["--pg-seeds", "0"], "pg_seeds (--pg-seeds) must be a whole number >= 1"),
    ("cartpole", ["--gamma", "inf"], "gamma (--gamma) must be a number from 0 to 1, got inf"),
    ("model_based", ["--planning-steps", "-5"], ("planning_steps (--planning-steps) must be a "
                                                 "whole number >= 0")),
    ("model_based", ["--alpha", "0"], "alpha (--alpha) must be a finite number > 0, got 0.0"),
    ("model_free", ["--lambdas", "0.5,1.5"], "lambdas (--lambdas) must be a number from 0 to 1"),
    ("model_free", ["--alpha-points", "1"], ("alpha_points (--alpha-points) must be a whole "
                                             "number >= 2, got 1")),
    ("model_free", ["--n-steps", "0,2"], "n_steps (--n-steps) must be a whole number >= 1"),
]


# every demo, through cli.validate: an empty --out-dir would write into the current folder
CASES += [(info.name, ["--out-dir", ""], "out_dir (--out-dir) must be a folder for the figures")
          for info in pkgutil.iter_modules(minimal.demos.__path__)]


@pytest.mark.parametrize("name, flags, message", CASES,
                         ids=[f"{name} {' '.join(flags)}" for name, flags, _ in CASES])
def test_a_bad_setting_is_a_usage_error_before_any_work(name, flags, message, capsys, tmp_path,
                                                        monkeypatch):
    module = importlib.import_module(f"minimal.demos.{name}")
    monkeypatch.setattr(module, "run", lambda config: pytest.fail("the demo started"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(module.__name__, ["--out-dir", str(tmp_path / "out"), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_figure_sweeps_beyond_convergence_is_refused_after_the_one_second_evaluation(tmp_path):
    from minimal.demos import dynamic_programming as dp
    from minimal.errors import ConfigError
    config = dp.Config(theta=1e-2, figure_sweeps=(0, 500), out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"converged after \d+ sweeps.*got \(0, 500\)"):
        dp.run(config)


@pytest.mark.parametrize("name", ["dqn", "actor_critic"])
@pytest.mark.parametrize("where, message", [
    ("file", "is a file; expected a folder for the figures"),
    ("under_a_file", "file is a file, not a folder"),
])
def test_an_unusable_out_dir_is_one_line_before_any_training(name, where, message, tmp_path,
                                                            monkeypatch, capsys):
    """Refused before the run starts, not at its first figure with the metrics lost."""
    module = importlib.import_module(f"minimal.demos.{name}")
    monkeypatch.setattr(module, "run", lambda config: pytest.fail("training started"))
    (tmp_path / "file").write_text("x")
    out_dir = tmp_path / "file" if where == "file" else tmp_path / "file" / "figures"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(module.__name__, ["--quick", "--out-dir", str(out_dir)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_an_interrupted_demo_leaves_a_record_saying_so(tmp_path, monkeypatch):
    """Figures of two runs mixed in one folder: run.json says the last one was interrupted."""
    import json
    module = importlib.import_module("minimal.demos.natural_gradient")

    def interrupted(config):
        (tmp_path / "figure.png").write_bytes(b"half of the figures")
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run", interrupted)
    with pytest.raises(SystemExit) as stop:  # Ctrl-C: one line and exit code 130
        cli.main(module.__name__, ["--quick", "--out-dir", str(tmp_path)])
    assert stop.value.code == 130
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "interrupted" and record["config"]["steps"] == 60


@pytest.mark.parametrize("content, message", [
    (b"epoch 3 loss 0.2\n", "not an .npz archive: it looks like a text file"),
    (None, "not an .npz archive: it is a single .npy array"),
])
def test_a_text_file_or_npy_given_as_a_checkpoint_is_reported_as_what_it_is(tmp_path, content,
                                                                            message):
    import numpy as np

    from minimal import nn, optim
    from minimal.app import training
    from minimal.errors import CheckpointError
    config = cli.make_config(importlib.import_module("minimal.demos.natural_gradient").Config,
                             out_dir=str(tmp_path))
    path = tmp_path / training.CHECKPOINT_NAME
    if content is None:
        with open(path, "wb") as file:
            np.save(file, np.zeros(4))
    else:
        path.write_bytes(content)
    model = nn.Linear(2, 2, rng=np.random.default_rng(0))
    state = training.TrainingState("t", config, {"model": model},
                                   {"adam": optim.Adam(model.parameters())},
                                   np.random.default_rng(0))
    with pytest.raises(CheckpointError, match=message):
        state.resume()
