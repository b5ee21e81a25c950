"""The settings a service process would start with, as a fingerprint `make up` can compare.

    python deploy/local/service_env.py MODULE [NAME=VALUE ...]

prints one line `NAME <sha256 of the value>` for every environment variable the service reads that is
set (the fields of MODULE.settings.Settings, matched case-insensitively as pydantic-settings does,
plus OpenTelemetry's OTEL_*), from this process's environment overlaid with the NAME=VALUE arguments
(what services.sh adds per service). Values are hashed so the recorded file holds no secret.
Unrelated variables (PWD, SHLVL, a terminal's own) are left out: they change nothing in the service.
"""

import hashlib
import importlib
import os
import sys
from collections.abc import Iterable, Mapping

EXTRA_PREFIXES = ("OTEL_",)


def setting_names(module: str) -> set[str]:
    settings = importlib.import_module(f"{module}.settings").Settings
    names = set()
    for field, info in settings.model_fields.items():
        names.add(field.upper())
        if isinstance(info.validation_alias, str):
            names.add(info.validation_alias.upper())
    return names


def fingerprint(env: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """NAME -> sha256 of its value, for the variables among `names` (any case) or OTEL_* set in env."""
    wanted = {n.upper() for n in names}
    out = {}
    for key, value in env.items():
        upper = key.upper()
        if upper in wanted or upper.startswith(EXTRA_PREFIXES):
            out[upper] = hashlib.sha256(value.encode()).hexdigest()
    return dict(sorted(out.items()))


def changed(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The names whose value was set, unset or changed between two fingerprints."""
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def parse(text: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--diff":  # --diff OLD_FILE NEW_FILE: the changed names
        with open(argv[1]) as old, open(argv[2]) as new:
            print(" ".join(changed(parse(old.read()), parse(new.read()))))
        return 0
    module, assignments = argv[0], argv[1:]
    env = dict(os.environ)
    env.update(a.split("=", 1) for a in assignments)
    for name, digest in fingerprint(env, setting_names(module)).items():
        print(name, digest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
