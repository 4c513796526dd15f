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


# ===== the package's layers: imports run one way ============================================
# demos -> app shell, rl runtime, data -> engine -> kernels -> NumPy. Each role may import the
# roles listed for it (and itself); the engine is the top-level modules.
ENGINE = {"autograd", "functional", "conv", "nn", "optim", "gradcheck", "distributions",
          "natural", "errors"}
ALLOWED = {
    "kernels": set(),
    "engine": {"kernels"},
    "rl": {"engine", "kernels"},
    "app": {"engine", "kernels", "data"},
    "data": {"engine", "app"},
    "demos": {"engine", "kernels", "rl", "app", "data"},
}


def role(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:  # `minimal` itself
        return "engine"
    return "engine" if parts[1] in ENGINE else parts[1]


def imported_modules(path: Path) -> set[str]:
    """Every minimal module the file imports, at any depth (function-level imports too)."""
    package = package_of(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            source = import_source(node, package)
            if source == "minimal":  # from minimal import nn, data: each name is a module
                found |= {f"minimal.{alias.name}" for alias in node.names}
            elif source.startswith("minimal."):
                found.add(source)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("minimal.")}
    return found


def layering_problems(path: Path) -> list[str]:
    name = module_name(path)
    own = role(name)
    problems = []
    for imported in imported_modules(path):
        other = role(imported)
        if other == own:
            if own == "demos" and imported != "minimal.demos" and name != "minimal.demos":
                problems.append(f"{name} imports another demo, {imported}")
        elif other not in ALLOWED[own]:
            problems.append(f"{name} ({own}) imports {imported} ({other})")
    return problems


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_run_one_way(path):
    assert layering_problems(path) == []


def test_the_layering_check_sees_an_upward_import(monkeypatch):
    fake = ROOT / "kernels" / "_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "from minimal import nn\n")
    assert layering_problems(fake) == ["minimal.kernels._probe (kernels) imports minimal.nn "
                                       "(engine)"]
    fake = ROOT / "demos" / "_probe.py"
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: "from minimal.demos.gan import train_step\n")
    assert layering_problems(fake) == ["minimal.demos._probe imports another demo, "
                                       "minimal.demos.gan"]
