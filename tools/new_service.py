"""A new service from the template (tools/service_template): `python -m tools.new_service NAME PORT`.

Writes services/NAME (pyproject.toml and src/PACKAGE with the standard files: __main__, settings,
bootstrap, api, handlers, domain, repository, consumers, migrations/0001_PACKAGE.sql), a test in
tests/unit/PACKAGE/, its line in deploy/services.conf, its docker-compose.yml entry, and its place in
the workspace (pyproject.toml). The generated service runs as it is (it keeps the orders placed and
lists them to operators): rename and rewrite from there. Then: `uv lock && make deps`.
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("service_template")

COMPOSE_ENTRY = """  {name}:
    <<: *oms-service
    build:
      <<: *oms-build
      args: {{SERVICE: {name}, MODULE: {pkg}, PORT: "{port}"}}
    ports:
      - "127.0.0.1:{port}:{port}"
    environment:
      <<: *oms-env
      SERVICE_NAME: {name}
      HTTP_PORT: "{port}"
      DATABASE_URL: postgresql://{db}:{db}@postgres:5432/{db}

"""


def services_conf(root: Path) -> list[tuple[str, str, int, str]]:
    rows = []
    for line in (root / "deploy" / "services.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, module, port, db = line.split()
            rows.append((name, module, int(port), db))
    return rows


def check(root: Path, name: str, port: int) -> str:
    """The package name, or SystemExit naming what is wrong."""
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        raise SystemExit(f"NAME must be lower-case words joined by '-', like order-capture: not {name!r}")
    pkg = name.replace("-", "_")
    if not 1024 <= port <= 65535:
        raise SystemExit(f"PORT must be 1024-65535, not {port}")
    for other, module, other_port, db in services_conf(root):
        if name == other or pkg in (module, db):
            raise SystemExit(f"deploy/services.conf already has {other} ({module}, database {db})")
        if port == other_port:
            raise SystemExit(f"port {port} is {other}'s (deploy/services.conf)")
    if (root / "services" / name).exists():
        raise SystemExit(f"services/{name} exists already")
    return pkg


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"__{key}__", value)
    return text


def _copy(src: Path, dst: Path, values: dict[str, str]) -> list[Path]:
    written = []
    for path in sorted(src.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        target = dst / _fill(str(path.relative_to(src)), values)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_fill(path.read_text(), values))
        written.append(target)
    return written


def _insert_after_last(text: str, pattern: str, line: str) -> str:
    """`line` after the last line matching `pattern` (the workspace lists in pyproject.toml)."""
    found = list(re.finditer(pattern, text, flags=re.M))
    if not found:
        raise SystemExit(f"pyproject.toml: no line matches {pattern!r}; add {line.strip()!r} by hand")
    end = found[-1].end()
    return text[:end] + "\n" + line + text[end:]


def generate(root: Path, name: str, port: int) -> list[Path]:
    pkg = check(root, name, port)
    title = name.replace("-", " ").capitalize()
    values = {"NAME": name, "PKG": pkg, "PORT": str(port), "DB": pkg, "TITLE": title}
    written = _copy(TEMPLATE / "service", root / "services" / name, values)
    tests = root / "tests" / "unit" / pkg
    tests.mkdir(parents=True, exist_ok=False)
    (tests / "__init__.py").write_text("")
    written += _copy(TEMPLATE / "tests", tests, values)

    conf = root / "deploy" / "services.conf"
    conf.write_text(conf.read_text().rstrip("\n") + f"\n{name}  {pkg}  {port}  {pkg}\n")
    compose = root / "docker-compose.yml"
    text = compose.read_text()
    at = text.find("\nvolumes:")
    if at < 0:
        raise SystemExit("docker-compose.yml has no top-level volumes: to put the service before")
    compose.write_text(text[:at + 1] + COMPOSE_ENTRY.format(name=name, pkg=pkg, port=port, db=pkg).rstrip("\n")
                       + "\n\n" + text[at + 1:])
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    source = f"oms-{name} = {{ workspace = true }}"
    text = _insert_after_last(text, r"^oms-[a-z0-9-]+ = \{ workspace = true \}$", source)
    text = _insert_after_last(text, r'^  "oms-[a-z0-9-]+",$', f'  "oms-{name}",')
    text = re.sub(r'^(known-first-party = \[.*)\]$', lambda m: f'{m.group(1)}, "{pkg}"]', text, count=1, flags=re.M)
    pyproject.write_text(text)
    return written + [conf, compose, pyproject]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.new_service", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the service's name, e.g. loyalty or gift-cards (package: gift_cards)")
    parser.add_argument("port", type=int, help="its HTTP port (one no service of deploy/services.conf uses)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for path in generate(args.root, args.name, args.port):
        print(f"wrote {path.relative_to(args.root)}")
    print("next: uv lock && make deps; then make test-unit, and write the service's part of the README")
    return 0


if __name__ == "__main__":
    sys.exit(main())
