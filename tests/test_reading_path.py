"""The README's "How to read this code" names files and functions that exist.

Each step of the reading path is a numbered item: "N. `path`: `name`, `Class.method` — what to
look for". The names between the path and the dash must resolve in that module (a rename that
forgets the README fails here).
"""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = re.compile(r"^\d+\. `(minimal/[\w/]+\.py)`: (.*?) —", re.MULTILINE)


def reading_path() -> list[tuple[str, list[str]]]:
    text = (ROOT / "README.md").read_text()
    start = text.index("## How to read this code")
    end = text.index("\n## ", start + 1)
    section = text[start:end]
    steps = []
    for path, names in STEP.findall(section):
        steps.append((path, re.findall(r"`([\w.]+)`", names)))
    return steps


def resolve(path: str, name: str):
    module = importlib.import_module(path[:-3].replace("/", "."))
    value = module
    for part in name.split("."):
        value = getattr(value, part)
    return value


def test_every_step_names_a_file_and_functions_that_exist():
    steps = reading_path()
    assert len(steps) >= 9  # the engine's core through trpo, then the generative demos
    for path, names in steps:
        assert (ROOT / path).is_file(), path
        assert names, f"{path}: the step names no function"
        for name in names:
            assert callable(resolve(path, name)), f"{path}: {name}"


def test_the_path_starts_at_the_core_and_reaches_trpo():
    files = [path for path, _ in reading_path()]
    assert files[0] == "minimal/autograd.py"
    assert files.index("minimal/nn.py") < files.index("minimal/optim.py") \
        < files.index("minimal/demos/cartpole.py") < files.index("minimal/demos/trpo.py")
