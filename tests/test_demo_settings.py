"""Bad settings a user can give a demo: each is refused at once, before any work, with a usage
error (exit code 2) naming the flag, the value and what was expected."""

import importlib

import pytest

from minimal import cli

CASES = [
    ("natural_gradient", ["--steps", "0"], "steps (--steps) must be a whole number >= 1, got 0"),
    ("natural_gradient", ["--plain-lrs", ""], "plain_lrs (--plain-lrs) must be one or more"),
    ("natural_gradient", ["--tolerance", "nan"], "tolerance (--tolerance) must be a finite "
                                                 "number > 0, got nan"),
    ("trpo", ["--total-steps", "0"], "total_steps (--total-steps) must be a whole number >= 1"),
    ("trpo", ["--steps-per-update", "0"], "steps_per_update (--steps-per-update) must be a "
                                          "whole number >= 1"),
    ("trpo", ["--workers", "-1"], "workers (--workers) must be a whole number >= 0, got -1"),
    ("trpo", ["--env-ids", "CartPol-v1"], "unknown environment 'CartPol-v1'; did you mean "
                                          "CartPole-v1"),
    ("trpo", ["--compare-env", "Nope-v0"], "compare_env (--compare-env): unknown environment"),
    ("trpo", ["--activation", "gelu"], "activation (--activation) must be one of relu, tanh"),
    ("trpo", ["--gae-lambda", "1.2"], "gae_lambda (--gae-lambda) must be a number from 0 to 1"),
    ("actor_critic", ["--seeds", "0"], "seeds (--seeds) must be a whole number >= 1, got 0"),
    ("actor_critic", ["--methods", "a2c"], "methods (--methods) must be one of reinforce, "
                                           "reinforce_baseline, actor_critic, got ('a2c',)"),
    ("dqn", ["--batch-size", "0"], "batch_size (--batch-size) must be a whole number >= 1"),
    ("dqn", ["--variants", "double"], "variants (--variants) must be one of dqn, no_replay"),
    ("dqn", ["--loss", "l1"], "loss (--loss) must be one of huber, mse, got 'l1'"),
    ("dqn", ["--epsilon-end", "-0.1"], "epsilon_end (--epsilon-end) must be a number from 0"),
    ("dynamic_programming", ["--gamma", "1.5"], "gamma (--gamma) must be a number from 0 to 1, "
                                                "got 1.5"),
    ("dynamic_programming", ["--theta", "-1"], "theta (--theta) must be a finite number > 0, "
                                               "got -1.0"),
    ("dynamic_programming", ["--lake-map", "5x5"], "lake_map (--lake-map) must be one of 4x4, "
                                                   "8x8, got '5x5'"),
    ("cartpole", ["--pg-seeds", "0"], "pg_seeds (--pg-seeds) must be a whole number >= 1"),
    ("cartpole", ["--gamma", "inf"], "gamma (--gamma) must be a number from 0 to 1, got inf"),
    ("model_based", ["--planning-steps", "-5"], "planning_steps (--planning-steps) must be a "
                                                "whole number >= 0"),
    ("model_based", ["--alpha", "0"], "alpha (--alpha) must be a finite number > 0, got 0.0"),
    ("model_free", ["--lambdas", "0.5,1.5"], "lambdas (--lambdas) must be a number from 0 to 1"),
    ("model_free", ["--alpha-points", "1"], "alpha_points (--alpha-points) must be a whole "
                                            "number >= 2, got 1"),
    ("model_free", ["--n-steps", "0,2"], "n_steps (--n-steps) must be a whole number >= 1"),
]


@pytest.mark.parametrize("name, flags, message", CASES,
                         ids=[f"{name} {' '.join(flags)}" for name, flags, _ in CASES])
def test_a_bad_setting_is_a_usage_error_before_any_work(name, flags, message, capsys, tmp_path,
                                                        monkeypatch):
    module = importlib.import_module(f"minimal.demos.{name}")
    monkeypatch.setattr(module, "run", lambda config: pytest.fail("the demo started"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(module.__name__, [*flags, "--out-dir", str(tmp_path / "out")])
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
