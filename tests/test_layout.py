"""The shape of the code: tests mirror the package, and no module imports its way into a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from support import ROOT

PACKAGE = ROOT / "geventsrv"
TESTS = ROOT / "tests"

#: Modules whose tests live in a file not named after them, and where.
TESTED_ELSEWHERE = {
    "geventsrv/__init__.py": "test_package.py",
    "geventsrv/__main__.py": "test_package.py",
    "geventsrv/script.py": "test_package.py",
    "geventsrv/exitcodes.py": "test_cmdline.py",
    # The handlers' contract, tested through the simplest handlers that keep it.
    "geventsrv/connection.py": "test_modes_echo.py",
    # The HTTP family's overview, tested as the mode it makes.
    "geventsrv/http/__init__.py": "test_http_mode.py",
    "geventsrv/bench/__init__.py": "test_bench.py",
    "geventsrv/testing/__init__.py": "test_testing_process.py",
    "geventsrv/bench/__main__.py": "test_bench.py",
    "geventsrv/bench/lab.py": "test_bench.py",
    "geventsrv/bench/report.py": "test_bench.py",
    "geventsrv/bench/loadgen.py": "test_bench.py",
    "geventsrv/bench/cload.py": "test_bench.py",
    "geventsrv/bench/soak.py": "test_soak.py",
    "geventsrv/bench/capacity.py": "test_bench.py",
    "geventsrv/bench/tlscost.py": "test_bench.py",
    "geventsrv/bench/opscost.py": "test_bench.py",
    "geventsrv/bench/hostile.py": "test_server_hostile.py",
    "geventsrv/bench/haproxy.py": "test_prologue_haproxy.py",
    # The cluster's parts are tested together, by running it.
    "geventsrv/bench/clusterbench.py": "test_bench_cluster.py",
    "geventsrv/bench/clusterreport.py": "test_bench_cluster.py",
    "geventsrv/bench/clusterusers.py": "test_bench_cluster.py",
    "geventsrv/bench/distload.py": "test_bench_cluster.py",
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def expected_test_file(path: Path) -> str:
    """Where the tests of ``path`` live: named after the module, or its package for the
    lessons and the lab's reference servers (each tested as part of its set)."""
    relative = path.relative_to(ROOT).as_posix()
    if relative in TESTED_ELSEWHERE:
        return TESTED_ELSEWHERE[relative]
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":  # a subpackage's own module: tested under its name
        parts = parts[:-1]
    if parts[0] == "tutorial":
        return "test_tutorial.py"
    if parts[:2] == ("bench", "servers"):
        return "test_bench.py"
    return "test_" + "_".join(parts) + ".py"


def test_every_module_has_its_test_file():
    missing = [
        f"{path.relative_to(ROOT)} -> tests/{expected_test_file(path)}"
        for path in modules()
        if not (TESTS / expected_test_file(path)).exists()
    ]
    assert not missing, "modules without their test file:\n" + "\n".join(missing)


def test_every_test_file_names_a_module_or_a_behaviour_of_one():
    """No stray test files: each is a module's, or a module's with a suffix (test_server_faults)."""
    names = {expected_test_file(path)[:-3] for path in modules()}
    names |= {"test_loadtest", "test_packaging", "test_layout"}  # the project, not a module
    strays = [
        test.name
        for test in TESTS.glob("test_*.py")
        if not any(test.stem == name or test.stem.startswith(name + "_") for name in names)
    ]
    assert not strays, strays


def _type_checking_blocks(tree: ast.Module) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:``: names for the type checker, never run."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            for statement in node.body:
                inside |= {id(child) for child in ast.walk(statement)}
    return inside


def imports_of(path: Path) -> set[str]:
    """Every geventsrv module ``path`` imports when it runs, at the top or inside a function.

    Imports under ``if TYPE_CHECKING:`` are left out: they name types for mypy
    and are never executed, so they cannot make an import cycle.
    """
    found: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text())
    typing_only = _type_checking_blocks(tree)
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("geventsrv")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycles():
    """Function-level imports count too: a cycle hidden in a function is still a cycle."""
    names = {module_name(path): path for path in modules()}
    graph = {
        name: {dep for dep in imports_of(path) if dep in names and dep != name}
        for name, path in names.items()
    }
    # The package's lazy __getattr__ re-exports its API; that is not a dependency.
    graph["geventsrv"] = set()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_nothing_imports_main():
    for path in modules():
        assert "geventsrv.__main__" not in imports_of(path), path


def test_the_server_never_imports_the_lab_the_tutorial_or_the_test_harness():
    """They ship in the wheel (docs/development.md says why) but cost the server nothing."""
    extras = ("geventsrv.bench", "geventsrv.tutorial", "geventsrv.testing")
    for path in modules():
        name = module_name(path)
        if name.startswith(extras):
            continue
        reached = [dep for dep in imports_of(path) if dep.startswith(extras)]
        assert not reached, (name, reached)
