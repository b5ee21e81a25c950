"""The import-linter contracts of the repository, generated from the services folder so a new service
is covered the moment its package exists, then checked (`make imports`, part of `make check`):

- services are independent of each other (they share libs and oms_contracts, never code);
- libs import no service;
- inside each service: api | consumers -> handlers -> repository -> domain (a layer imports only the
  layers under it; api and consumers are independent siblings; the repository may build domain
  objects from rows, the domain never reaches the database);
- a service's domain imports neither the HTTP layer (fastapi, oms_platform.http) nor asyncpg.

`python -m tools.import_contracts --print` shows the generated configuration.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (("api", "consumers"), ("handlers",), ("repository",), ("domain",))
DOMAIN_FORBIDDEN = ("fastapi", "oms_platform.http", "asyncpg")


def packages(kind: str, root: Path = ROOT) -> list[str]:
    """The top-level packages under libs/*/src or services/*/src."""
    return sorted(p.name for p in root.glob(f"{kind}/*/src/*") if (p / "__init__.py").is_file())


def config(root: Path = ROOT) -> str:
    services, libs = packages("services", root), packages("libs", root)

    def has(package: str, module: str) -> bool:
        base = next(root.glob(f"services/*/src/{package}"))
        return (base / f"{module}.py").is_file() or (base / module / "__init__.py").is_file()

    lines = ["[importlinter]", "root_packages =", *(f"    {p}" for p in libs + services),
             "include_external_packages = True", ""]

    def contract(key: str, name: str, kind: str, **options: list[str]) -> None:
        lines.extend([f"[importlinter:contract:{key}]", f"name = {name}", f"type = {kind}"])
        for option, values in options.items():
            lines.extend([f"{option} =", *(f"    {v}" for v in values)])
        lines.append("")

    if len(services) > 1:
        contract("services-independent", "Services are independent of each other", "independence",
                 modules=services)
    contract("libs-import-no-service", "Libs import no service", "forbidden",
             source_modules=libs, forbidden_modules=services)
    # A submodule can be forbidden only inside the analysed packages (oms_platform.http, not fastapi.x).
    forbidden = [m for m in DOMAIN_FORBIDDEN if "." not in m or m.split(".")[0] in libs + services]
    for pkg in services:
        layers = [" | ".join(f"{pkg}.{m}" for m in layer if has(pkg, m)) for layer in LAYERS]
        if sum(1 for layer in layers if layer) > 1:
            contract(f"{pkg}-layers", f"{pkg}: api | consumers -> handlers -> repository -> domain", "layers",
                     layers=[layer for layer in layers if layer])
        if has(pkg, "domain"):
            contract(f"{pkg}-pure-domain", f"{pkg}.domain imports neither HTTP nor asyncpg", "forbidden",
                     source_modules=[f"{pkg}.domain"], forbidden_modules=forbidden)
    return "\n".join(lines)


def check(root: Path = ROOT, **run: object) -> subprocess.CompletedProcess:
    """Runs lint-imports on the generated contracts (the packages must be importable)."""
    with tempfile.NamedTemporaryFile("w", suffix=".ini", prefix="importlinter-") as f:
        f.write(config(root))
        f.flush()
        lint = Path(sys.executable).with_name("lint-imports")
        return subprocess.run([str(lint), f.name], cwd=root, check=False, **run)  # type: ignore[call-overload]


def main(argv: list[str]) -> int:
    if "--print" in argv:
        print(config())
        return 0
    return check().returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
