"""The generated import-linter contracts (tools/import_contracts.py): every service is covered as soon
as its package exists, and a broken rule fails the check."""

import os
from pathlib import Path

from tools.import_contracts import ROOT, check, config, packages

LAYERED = {"api": "from {pkg} import handlers\n", "consumers": "from {pkg} import handlers\n",
           "handlers": "from {pkg} import domain, repository\n", "repository": "from {pkg} import domain\n",
           "domain": "import decimal\n"}


def _service(root: Path, name: str, package: str, modules: dict[str, str]) -> None:
    base = root / "services" / name / "src" / package
    base.mkdir(parents=True)
    (base / "__init__.py").write_text("")
    for module, source in modules.items():
        (base / f"{module}.py").write_text(source.format(pkg=package))


def _tree(tmp_path: Path, **broken: str) -> Path:
    lib = tmp_path / "libs" / "shared" / "src" / "shared_lib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    _service(tmp_path, "alpha", "alpha_svc", {**LAYERED, **broken})
    _service(tmp_path, "beta", "beta_svc", LAYERED)
    return tmp_path


def _run(root: Path) -> tuple[int, str]:
    path = os.pathsep.join(str(p) for p in [*root.glob("libs/*/src"), *root.glob("services/*/src")])
    env = {**os.environ, "PYTHONPATH": path}
    done = check(root, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def test_every_service_and_lib_of_the_repository_is_in_the_contracts() -> None:
    text = config()
    services = packages("services")
    assert {"order_capture", "orchestrator", "inventory", "fulfilment"} <= set(services)
    for pkg in services + packages("libs"):
        assert f"    {pkg}\n" in text
    for pkg in services:
        if (next(ROOT.glob(f"services/*/src/{pkg}")) / "domain.py").is_file():
            assert f"[importlinter:contract:{pkg}-pure-domain]" in text


def test_a_well_layered_tree_passes(tmp_path: Path) -> None:
    code, out = _run(_tree(tmp_path))
    assert code == 0, out
    assert "alpha_svc: api | consumers -> handlers -> repository -> domain KEPT" in out


def test_each_broken_rule_fails(tmp_path: Path) -> None:
    root = _tree(tmp_path, domain="import fastapi\nfrom {pkg} import repository\n",
                 api="from {pkg} import handlers\nimport beta_svc.domain\n",
                 consumers="from {pkg} import api\n")
    code, out = _run(root)
    assert code != 0, out
    assert "Services are independent of each other BROKEN" in out
    assert "alpha_svc: api | consumers -> handlers -> repository -> domain BROKEN" in out
    assert "alpha_svc.domain imports neither HTTP nor asyncpg BROKEN" in out
    assert "beta_svc: api | consumers -> handlers -> repository -> domain KEPT" in out
