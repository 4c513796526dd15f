from dataclasses import dataclass

import pytest

from minimal import cli


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


def test_unknown_quick_field_is_an_error():
    with pytest.raises(TypeError, match="no field"):
        cli.make_config(Config, {"nope": 1})


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
