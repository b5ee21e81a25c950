"""The layout rules of the repository: a service imports libs and the shared contracts, never another
service; libs import no service; every service `make up` starts has its project and its migrations."""

import ast
import re
import tomllib
from pathlib import Path

import pytest

from tests.support.services import service_table

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "services"
LIBS = ROOT / "libs"


def _service_packages() -> dict[str, Path]:
    """Top-level package name -> its folder, for every package under services/*/src/."""
    return {
        pkg.name: pkg
        for pkg in sorted(SERVICES.glob("*/src/*"))
        if pkg.is_dir() and not pkg.name.startswith((".", "_")) and pkg.name != "__pycache__"
    }


def _imported_top_level(path: Path) -> set[tuple[str, int]]:
    """The top-level modules a file imports (absolute imports, and import_module/__import__ of a
    literal name), with their line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add((node.args[0].value.split(".")[0], node.lineno))
    return found


def _violations(files: list[Path], forbidden: set[str]) -> list[str]:
    return [
        f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}:{line} imports {module}"
        for f in files
        for module, line in sorted(_imported_top_level(f))
        if module in forbidden
    ]


PACKAGES = _service_packages()


def test_there_are_services_to_check() -> None:
    assert PACKAGES, "no packages found under services/*/src/"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_service_imports_no_other_service(package: str) -> None:
    others = set(PACKAGES) - {package}
    problems = _violations(sorted(PACKAGES[package].rglob("*.py")), others)
    assert not problems, (
        "a service may import libs and oms_contracts, never another service (depend on the contracts "
        "instead):\n" + "\n".join(problems)
    )


def test_libs_import_no_service() -> None:
    problems = _violations(sorted(LIBS.glob("*/src/**/*.py")), set(PACKAGES))
    assert not problems, "libs are shared by every service and import none:\n" + "\n".join(problems)


def test_no_service_depends_on_another_services_project() -> None:
    projects = {}
    for pyproject in SERVICES.glob("*/pyproject.toml"):
        projects[pyproject.parent.name] = tomllib.loads(pyproject.read_text())["project"]
    names = {p["name"] for p in projects.values()}
    for folder, project in projects.items():
        deps = {re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0] for d in project.get("dependencies", [])}
        assert not deps & (names - {project["name"]}), f"services/{folder} depends on {deps & names}"


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "import os, inventory.domain\n"
        "from fulfilment import labels\n"
        "from . import sibling\n"
        "import importlib\n"
        "importlib.import_module('returns.api')\n"
        "__import__('tracking')\n"
    )
    assert {m for m, _ in _imported_top_level(source)} == {
        "os", "inventory", "fulfilment", "importlib", "returns", "tracking",
    }
    assert _violations([source], {"inventory", "tracking"}) == [f"{source}:1 imports inventory",
                                                                 f"{source}:6 imports tracking"]


@pytest.mark.parametrize("name", sorted(service_table()))
def test_every_configured_service_has_its_project_and_migrations(name: str) -> None:
    module = service_table()[name][0]
    folder = SERVICES / name
    assert (folder / "pyproject.toml").is_file(), f"deploy/services.conf lists {name}: services/{name}/pyproject.toml"
    package = folder / "src" / module
    assert (package / "__main__.py").is_file(), f"`python -m {module}` needs services/{name}/src/{module}/__main__.py"
    # Inside the package, so the installed service (a wheel) carries them too.
    assert (package / "migrations").is_dir(), (
        f"services/{name}/src/{module}/migrations/ is missing: each service owns its database schema, as plain "
        f"SQL files in its own package (ServiceRuntime(migrations=Path(__file__).parent / 'migrations'))"
    )


# HTTP stays at the edge (api.py): use cases raise oms_platform.errors, and SQL lives in repositories.
HTTP_MODULES = ("fastapi", "starlette", "oms_platform.http")
SQL = re.compile(r"\bSELECT\b[\s\S]+\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b")


def _use_case_files(package: Path) -> list[Path]:
    return sorted([*package.glob("handlers.py"), *package.glob("handlers/*.py"), *package.glob("domain.py")])


def _http_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = [(alias.name, node.lineno) for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names]
    names += [(node.module, node.lineno) for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module]
    return [f"{path.relative_to(ROOT)}:{line} imports {name}" for name, line in names
            if name.startswith(HTTP_MODULES)]


def _sql_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{path.relative_to(ROOT)}:{node.lineno} has SQL" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value)]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_use_cases_know_no_http(package: str) -> None:
    problems = [p for f in _use_case_files(PACKAGES[package]) for p in _http_imports(f)]
    assert not problems, (
        "handlers and domain raise oms_platform.errors (NotFound, Conflict, InvalidTransition, RuleBroken); "
        "oms_platform.http maps them to the error body:\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_sql_only_in_repositories(package: str) -> None:
    pkg = PACKAGES[package]
    files = [*_use_case_files(pkg), *pkg.glob("api.py"), *pkg.glob("consumers.py")]
    problems = [p for f in files for p in _sql_strings(f)]
    assert not problems, "SQL belongs in the service's repository:\n" + "\n".join(problems)


def test_the_sql_check_sees_statements_and_not_prose() -> None:
    assert SQL.search("SELECT channel, status FROM orders WHERE order_id = $1")
    assert SQL.search("UPDATE shipments SET status = 'delivered'")
    assert not SQL.search("one UPDATE ... FROM applies one source row per target")


def test_the_bench_imports_nothing_from_the_tests() -> None:
    problems = _violations(sorted((ROOT / "bench").rglob("*.py")), {"tests"})
    assert not problems, "bench/ runs without the test suite (make bench), so it imports nothing from tests/:\n" + \
        "\n".join(problems)
