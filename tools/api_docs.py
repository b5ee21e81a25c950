"""The services' API documents under docs/api/: `python -m tools.api_docs` (make api-docs) writes, for
every service of deploy/services.conf, <service>.openapi.json and <service>.asyncapi.json exactly as
the running service serves them at /openapi.json and /asyncapi.json; `--check` only says which are
stale (tests/test_api_docs.py runs it, so a change to an API or a contract fails until they are
regenerated)."""

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api"


def services() -> list[tuple[str, str]]:
    rows = (line.split() for line in (ROOT / "deploy" / "services.conf").read_text().splitlines())
    return [(row[0], row[1]) for row in rows if row and not row[0].startswith("#")]


def build(name: str, module: str) -> FastAPI:
    settings_cls = importlib.import_module(f"{module}.settings").Settings
    # Settings given here win over the environment: the documents do not depend on who generates them.
    settings = settings_cls(service_name=name, kafka_topic_prefix="", rate_limit_per_key_per_second=100)
    app: FastAPI = importlib.import_module(f"{module}.bootstrap").build_app(settings)
    return app


def documents(name: str, module: str) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    app = build(name, module)
    client = TestClient(app)  # no lifespan: nothing is started, the documents are built from the code
    return {f"{name}.openapi.json": client.get("/openapi.json").json(),
            f"{name}.asyncapi.json": client.get("/asyncapi.json").json()}


def render(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def stale() -> list[str]:
    """The files under docs/api that differ from what the code generates now (or are missing)."""
    out = []
    for name, module in services():
        for file, doc in documents(name, module).items():
            path = OUT / file
            if not path.exists() or path.read_text() != render(doc):
                out.append(file)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale documents (exit 1 if any)")
    args = parser.parse_args()
    if args.check:
        files = stale()
        for file in files:
            print(f"docs/api/{file} is stale: run make api-docs")
        return 1 if files else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, module in services():
        for file, doc in documents(name, module).items():
            (OUT / file).write_text(render(doc))
            print(f"docs/api/{file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
