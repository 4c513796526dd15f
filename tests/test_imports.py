"""What the modules under minimal/ take from each other is public: no name imported from another
minimal module starts with an underscore, so a reader never has to chase a private helper across
files (the engine's way to define an op, `autograd.node`, is public and documented).

Every module is found by walking the folder, so a new demo or engine file is checked too.
"""

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "minimal"
MODULES = sorted(ROOT.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def import_source(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a `from ... import` in `package` reads from (relative ones too)."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports(path: Path) -> list[str]:
    """`module.name` for every private name this file imports from a minimal module.

    A private module inside a package (minimal/data/_draw.py), imported by its own siblings,
    is the package's business and allowed; a private name taken from another package is not.
    Private attributes reached through a module (`conv._pair`) count as imports too.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = package_of(path)
    aliases = {}  # local name -> minimal module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = import_source(node, package)
            if source != "minimal" and not source.startswith("minimal."):
                continue
            for alias in node.names:
                if alias.name.startswith("_"):
                    submodule = f"{source}.{alias.name}"
                    sibling = (ROOT.parent / submodule.replace(".", "/")).with_suffix(".py")
                    if not (sibling.exists() and source == package):
                        found.append(f"{source}.{alias.name}")
                aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("minimal"):
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


def test_the_walk_finds_the_engine_and_the_demos():
    names = {module_name(p) for p in MODULES}
    assert {"minimal.autograd", "minimal.nn", "minimal.conv", "minimal.demos.dqn"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_no_private_name_crosses_a_module_boundary(path):
    assert private_imports(path) == []


def imported_names(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every `from minimal... import name` in the file."""
    package = package_of(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            source = import_source(node, package)
            if source == "minimal" or source.startswith("minimal."):
                found += [(source, alias.name) for alias in node.names]
    return found


def test_every_name_taken_from_another_module_exists():
    for path in MODULES:
        for source, name in imported_names(path):
            module = importlib.import_module(source)
            assert hasattr(module, name) or importlib.util.find_spec(f"{source}.{name}"), \
                f"{path.name}: {source}.{name}"


def test_the_check_sees_a_private_import(tmp_path, monkeypatch):
    fake = ROOT / "demos" / "_probe_does_not_exist.py"
    source = "from minimal.conv import _pair\nfrom minimal import autograd as ag\nag._node(1)\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert private_imports(fake) == ["minimal.conv._pair", "minimal.autograd._node"]
