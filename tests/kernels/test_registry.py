"""minimal/kernels/__init__.py: every entry of the table is wired to the reference it names,
and the switch (MINIMAL_KERNELS=reference, set_enabled, enabled) turns every kernel off."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minimal import kernels

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(kernels.TABLE))
def test_each_kernel_is_wired_to_the_reference_it_names(name):
    """TABLE[name].replaces names a function marked with this very name (fast_path or
    replaceable): calling it with kernels on reaches the kernel."""
    entry = kernels.TABLE[name]
    module_name, function_name = entry.replaces.rsplit(".", 1)
    module = importlib.import_module(
        f"minimal.demos.{module_name}" if module_name == "draw" else f"minimal.{module_name}")
    marked = getattr(module, function_name)
    assert callable(getattr(marked, "reference", None)), f"{entry.replaces} is not marked"
    names = marked.__code__.co_freevars  # the decorator's closure holds its kernel's name
    cell = dict(zip(names, marked.__closure__))["name"].cell_contents
    assert cell == name
    assert entry.when and entry.why


def test_the_switch_turns_every_kernel_off_and_on():
    assert kernels.find("linear") is kernels.TABLE["linear"].run
    with kernels.enabled(False):
        assert all(kernels.find(name) is None for name in kernels.TABLE)
        with kernels.enabled(True):
            assert kernels.find("im2col") is not None
        assert kernels.find("im2col") is None
    assert kernels.is_enabled()


def test_the_environment_variable_turns_kernels_off():
    env = dict(os.environ, MINIMAL_KERNELS="reference")
    out = subprocess.run([sys.executable, "-c", "from minimal import kernels; "
                          "print(kernels.is_enabled(), kernels.find('linear'))"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "None"]
