import re
from dataclasses import dataclass

import pytest

from minimal.app import cli


@dataclass
class Config:
    seed: int = 0  # seed for everything
    lr: float = 0.1  # learning rate
    name: str = "x"  # a name
    fast: bool = False  # go fast
    sizes: tuple = (1, 2)  # layer sizes
    out_dir: str = "outputs/t"  # where figures go


QUICK = {"lr": 0.5, "seed": 3}


def test_comments_become_help():
    assert cli.field_comments(Config) == {
        "seed": "seed for everything", "lr": "learning rate", "name": "a name",
        "fast": "go fast", "sizes": "layer sizes", "out_dir": "where figures go"}
    text = cli.build_parser(Config).format_help()
    assert "--out-dir" in text and "learning rate" in text and "--quick" in text


def test_quick_then_explicit_flags():
    assert cli.parse_config(Config, QUICK, []) == Config()
    assert cli.parse_config(Config, QUICK, ["--quick"]) == Config(lr=0.5, seed=3)
    config = cli.parse_config(Config, QUICK, ["--quick", "--seed", "7", "--fast", "true",
                                              "--sizes", "4,5,6"])
    assert config == Config(lr=0.5, seed=7, fast=True, sizes=(4, 5, 6))


def test_named_preset_between_quick_and_the_flags_given():
    presets = {"big": {"lr": 0.9, "fast": True, "sizes": (8, 8)}}
    assert cli.parse_config(Config, QUICK, ["--preset", "big"], presets=presets) == Config(
        lr=0.9, fast=True, sizes=(8, 8))
    # --quick's values first, the preset's over them, then every flag given, even one that
    # names the plain default (fast=False) over a preset value
    config = cli.parse_config(Config, QUICK, ["--quick", "--preset", "big", "--fast", "false",
                                              "--sizes", "1,2"], presets=presets)
    assert config == Config(lr=0.9, seed=3, fast=False, sizes=(1, 2))
    assert "--preset" in cli.build_parser(Config, None, presets).format_help()
    with pytest.raises(SystemExit):  # no presets: no --preset flag
        cli.parse_config(Config, QUICK, ["--preset", "big"])
    with pytest.raises(SystemExit):  # an unknown name is a usage error
        cli.parse_config(Config, QUICK, ["--preset", "small"], presets=presets)


def test_a_field_named_preset_is_a_field_when_the_demo_names_no_presets():
    @dataclass
    class WithPreset:
        preset: str = "none"  # an ordinary setting that happens to be called preset
        out_dir: str = "outputs/t"  # where figures go

    assert cli.parse_config(WithPreset, None, ["--preset", "x"]).preset == "x"


def test_unknown_quick_field_is_an_error():
    with pytest.raises(TypeError, match="no field"):
        cli.make_config(Config, {"nope": 1})


def test_a_bool_flag_alone_means_true():
    assert cli.parse_config(Config, None, ["--fast"]).fast is True
    assert cli.parse_config(Config, None, ["--fast", "--seed", "2"]) == Config(fast=True, seed=2)
    assert cli.parse_config(Config, None, ["--fast", "false"]).fast is False


def test_bad_bool_is_an_error():
    with pytest.raises(SystemExit):
        cli.parse_config(Config, None, ["--fast", "maybe"])


def test_progress_prints_last_step(capsys):
    import io
    stream = io.StringIO()
    progress = cli.Progress(10, stream=stream, every=1e9)
    progress.update(1, loss=0.5)
    progress.update(5, loss=0.25)
    progress.update(10, loss=0.125)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("step 10/10  loss 0.125")


def test_progress_rate_after_a_resume_counts_only_this_runs_steps(monkeypatch):
    """Resumed at step 900 of 1000, 50 steps in 10 s: 5 step/s and 10 s left (not the 95
    step/s and 0 s that counting the earlier run's 900 steps as this run's would say)."""
    import io
    clock = iter([100.0, 110.0])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    progress = cli.Progress(1000, stream=stream, every=0, first=900)
    progress.update(950)
    assert stream.getvalue().split("  ")[-2:] == ["5 step/s", "left 10s\n"]


@dataclass
class Checked:
    steps: int = 3  # steps
    lr: float = 0.1  # step size
    gamma: float = 0.9  # discount
    sizes: tuple = (4, 5)  # layer sizes
    model: str = "conv"  # conv or mlp

    def __post_init__(self):
        cli.validate(self, counts=("steps", "sizes"), positive=("lr",), fractions=("gamma",),
                     choices={"model": ("conv", "mlp")})


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], r"steps \(--steps\) must be a whole number >= 1, got 0"),
    (["--lr", "nan"], r"lr \(--lr\) must be a finite number > 0, got nan"),
    (["--lr", "-1"], r"must be a finite number > 0, got -1.0"),
    (["--gamma", "1.5"], r"gamma \(--gamma\) must be a number from 0 to 1, got 1.5"),
    (["--sizes", "4,0"], r"sizes \(--sizes\) must be a whole number >= 1, got \(4, 0\)"),
    (["--model", "rnn"], r"model \(--model\) must be one of conv, mlp, got 'rnn'"),
])
def test_a_value_out_of_its_domain_is_a_usage_error(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_config(Checked, None, flags)
    assert exit_info.value.code == 2
    import re
    assert re.search(message, capsys.readouterr().err)


def test_validation_also_guards_direct_construction():
    from minimal.errors import ConfigError
    with pytest.raises(ConfigError, match="steps"):
        cli.make_config(Checked, None, steps=-2)
    assert cli.make_config(Checked, None, steps=2).steps == 2


@dataclass
class Awkward:
    margin: float = 0.0  # improvement margin (0.05 = 5% of the previous)
    widths: tuple = (1, 2)  # hidden widths; the first is the
    # widest (this line continues the comment above)
    colour: str = "#fff"  # a colour with a hash in its default
    skip: tuple = (1,)  # values tried (empty: skip)


def test_help_shows_percent_signs_and_continued_comments_whole():
    text = cli.build_parser(Awkward).format_help()
    def squeeze(words: str) -> str:  # argparse re-wraps help: compare without whitespace
        return re.sub(r"\s+", "", words)

    assert squeeze("improvement margin (0.05 = 5% of the previous)") in squeeze(text)
    assert squeeze("hidden widths; the first is the widest (this line continues the comment "
                   "above)") in squeeze(text)
    assert cli.field_comments(Awkward)["colour"] == "a colour with a hash in its default"


def test_an_empty_tuple_can_be_given():
    assert cli.parse_config(Awkward, None, ["--skip", ""]).skip == ()
    assert cli.parse_config(Awkward, None, ["--widths", "4, 5"]).widths == (4, 5)


def test_a_malformed_tuple_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_config(Awkward, None, ["--widths", "4,x"])
    assert exit_info.value.code == 2
    assert "comma-separated list of int" in capsys.readouterr().err


def test_main_names_a_demo_run_with_dash_m_by_its_module(tmp_path, monkeypatch, capsys):
    """`python -m minimal.demos.toy` runs the module as __main__: errors and run.json still
    say "toy", not "__main__"."""
    import importlib.machinery
    import json
    import sys
    import types

    from minimal.errors import DataError

    @dataclass
    class ToyConfig:
        out_dir: str = str(tmp_path)

    def run(config):
        raise DataError("no digits here")

    module = types.ModuleType("__main__")
    module.__spec__ = importlib.machinery.ModuleSpec("minimal.demos.toy", None)
    module.Config, module.run = ToyConfig, run
    monkeypatch.setitem(sys.modules, "__main__", module)
    with pytest.raises(SystemExit):
        cli.main("__main__", [])
    assert capsys.readouterr().err.strip() == "toy: no digits here"
    assert json.loads((tmp_path / "run.json").read_text())["demo"] == "toy"
