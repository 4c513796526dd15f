"""Every demo module in minimal/demos/ (found with pkgutil, so a new demo is covered without
editing this file): `--help` works and shows every field's comment whole, and the defaults, the
quick preset and any named preset (PRESETS) pass the Config's own validation."""

import dataclasses
import importlib
import pkgutil

import pytest

import minimal.demos
from minimal.app import cli

DEMOS = sorted(info.name for info in pkgutil.iter_modules(minimal.demos.__path__))


def _squeeze(text: str) -> str:
    return "".join(text.split())  # argparse re-wraps help; compare without whitespace


@pytest.mark.parametrize("name", DEMOS)
def test_help_shows_every_field_comment_whole(name, capsys):
    module = importlib.import_module(f"minimal.demos.{name}")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(module.__name__, ["--help"])  # what `python -m minimal.demos.NAME --help` does
    assert exit_info.value.code == 0
    shown = _squeeze(capsys.readouterr().out)
    for preset in getattr(module, "PRESETS", {}):  # a named preset is offered as --preset
        assert "--preset{" in shown and preset in shown, f"{name}: no --preset {preset}"
    comments = cli.field_comments(module.Config)
    for field in dataclasses.fields(module.Config):
        comment = comments.get(field.name, "")
        assert comment, f"{name}: field {field.name} has no comment for --help"
        assert _squeeze(comment) in shown, f"{name}: --help cuts the comment of {field.name}"


@pytest.mark.parametrize("name", DEMOS)
def test_defaults_and_quick_preset_pass_validation(name):
    module = importlib.import_module(f"minimal.demos.{name}")
    assert "__post_init__" in vars(module.Config), \
        f"{name}: Config has no __post_init__ calling cli.validate"
    cli.make_config(module.Config)
    cli.make_config(module.Config, getattr(module, "QUICK", None))
    for values in getattr(module, "PRESETS", {}).values():  # and each named preset, alone and
        cli.make_config(module.Config, values)  # on top of the quick one
        cli.make_config(module.Config, {**getattr(module, "QUICK", {}), **values})
