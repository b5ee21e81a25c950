"""The service template (tools/new_service.py) in a temporary copy of the repository's wiring: the
generated service has the standard files, is wired into services.conf, compose and the workspace,
passes ruff and the import contracts, imports, builds its app, and its generated test passes."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import import_contracts, new_service

ROOT = Path(__file__).resolve().parents[1]
STANDARD = {"__init__.py", "__main__.py", "settings.py", "bootstrap.py", "api.py", "handlers.py", "domain.py",
            "repository.py", "consumers.py", "migrations/0001_gift_cards.sql"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    for name in ("deploy/services.conf", "docker-compose.yml", "pyproject.toml"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, root / name)
    # The test suite's package as in the repository (the generated test imports tests.support).
    (root / "tests" / "unit").mkdir(parents=True)
    for init in ("tests/__init__.py", "tests/unit/__init__.py"):
        (root / init).write_text("")
    (root / "tests" / "support").symlink_to(ROOT / "tests" / "support")
    assert new_service.main(["gift-cards", "8099", "--root", str(root)]) == 0
    return root


def _run(argv: list[str], root: Path) -> subprocess.CompletedProcess:
    src = root / "services" / "gift-cards" / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_service_has_the_standard_files_and_its_wiring(generated: Path) -> None:
    package = generated / "services" / "gift-cards" / "src" / "gift_cards"
    assert {str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()} == STANDARD
    text = "".join(p.read_text() for p in package.rglob("*") if p.is_file())
    assert not re.search(r"__[A-Z]+__", text), "a placeholder is left"
    assert ("gift-cards", "gift_cards", 8099, "gift_cards") in new_service.services_conf(generated)
    compose = (generated / "docker-compose.yml").read_text()
    assert "  gift-cards:\n" in compose and "postgresql://gift_cards:gift_cards@postgres:5432/gift_cards" in compose
    assert compose.index("  gift-cards:") < compose.index("\nvolumes:")
    pyproject = (generated / "pyproject.toml").read_text()
    assert 'oms-gift-cards = { workspace = true }' in pyproject and '  "oms-gift-cards",' in pyproject
    assert (generated / "tests" / "unit" / "gift_cards" / "test_gift_cards.py").is_file()


def test_a_second_service_with_that_name_or_port_is_refused(generated: Path) -> None:
    with pytest.raises(SystemExit, match="already has gift-cards"):
        new_service.generate(generated, "gift-cards", 8098)
    with pytest.raises(SystemExit, match="port 8099 is gift-cards's"):
        new_service.generate(generated, "loyalty", 8099)
    with pytest.raises(SystemExit, match="lower-case words"):
        new_service.generate(generated, "Gift_Cards", 8097)


def test_the_generated_code_passes_ruff_and_the_import_contracts(generated: Path) -> None:
    ruff = _run([str(Path(sys.executable).with_name("ruff")), "check", "services", "tests"], generated)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    src = generated / "services" / "gift-cards" / "src"
    lint = import_contracts.check(generated, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(src)})
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "gift_cards: api | consumers -> handlers -> repository -> domain KEPT" in lint.stdout


def test_the_generated_service_builds_its_app_and_its_test_passes(generated: Path) -> None:
    build = _run([sys.executable, "-c", "from fastapi.testclient import TestClient; "
                  "from gift_cards.bootstrap import build_app; app = build_app(); "
                  "print(TestClient(app).get('/healthz').status_code, sorted(app.openapi()['paths']))"], generated)
    assert build.returncode == 0, build.stderr
    assert build.stdout.startswith("200 ") and "/v1/gift-cards/orders/{order_id}" in build.stdout
    test = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(generated),
                 "tests/unit/gift_cards/test_gift_cards.py"], generated)
    assert test.returncode == 0, test.stdout + test.stderr
