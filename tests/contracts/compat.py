"""Compatibility of published JSON schemas, and the snapshot files that record them.

A published event's schema may grow (a new optional property, a new enum value) but never break what
its consumers and the messages already on the topics rely on: no property removed or retyped, no new
required property, no property newly required, no enum value removed, no constraint tightened.
"""

import json
import os
from pathlib import Path
from typing import Any

UPDATE_ENV = "UPDATE_SCHEMA_SNAPSHOTS"
REFRESH = f"{UPDATE_ENV}=1 uv run pytest tests/contracts"

Schema = dict[str, Any]

_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """What in `new` breaks a reader of `old` (one line per problem, each naming its property path)."""
    return _Checker(old, new).compare(old, new, "", frozenset())


class _Checker:
    def __init__(self, old_root: Schema, new_root: Schema):
        self.roots = (old_root, new_root)

    def compare(self, old: Schema, new: Schema, path: str, seen: frozenset) -> list[str]:
        pair = (old.get("$ref"), new.get("$ref"))
        if pair[0] and pair[1]:
            if pair in seen:  # a recursive model: this pair is being compared further up
                return []
            seen = seen | {pair}
        old_variants = _group(self._variants(old, 0))
        new_variants = _group(self._variants(new, 1))
        where = path or "(root)"
        if set(old_variants) != set(new_variants):
            return [f"{where}: type changed from {_kinds(old_variants)} to {_kinds(new_variants)}"]
        problems: list[str] = []
        for kind, olds in old_variants.items():
            news = new_variants[kind]
            if len(olds) == 1 and len(news) == 1:
                problems += self._compare_one(olds[0], news[0], path, seen)
                continue
            by_title = {n.get("title"): n for n in news}
            for i, o in enumerate(olds):
                match = by_title.get(o.get("title")) if o.get("title") else (news[i] if i < len(news) else None)
                if match is None:
                    problems.append(f"{where}: {kind} variant {o.get('title') or i} removed")
                else:
                    problems += self._compare_one(o, match, path, seen)
        return problems

    def _compare_one(self, old: Schema, new: Schema, path: str, seen: frozenset) -> list[str]:
        where = path or "(root)"
        problems: list[str] = []
        if old.get("format") != new.get("format"):
            problems.append(f"{where}: format changed from {old.get('format')} to {new.get('format')}")
        old_values, new_values = _values(old), _values(new)
        if new_values is not None:
            if old_values is None:
                problems.append(f"{where}: values newly restricted to {', '.join(sorted(map(repr, new_values)))}")
            elif removed := old_values - new_values:
                problems.append(f"{where}: enum values removed: {', '.join(sorted(map(repr, removed)))}")
        problems += _tightened(old, new, where)
        if "properties" in old or "properties" in new:
            problems += self._compare_object(old, new, path, seen)
        extra_old, extra_new = old.get("additionalProperties", True), new.get("additionalProperties", True)
        if extra_old is not False and extra_new is False:
            problems.append(f"{where}: additional properties no longer allowed")
        elif isinstance(extra_old, dict) and isinstance(extra_new, dict):
            problems += self.compare(extra_old, extra_new, f"{path}{{*}}", seen)
        if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            problems += self.compare(old["items"], new["items"], f"{path}[]", seen)
        old_prefix, new_prefix = old.get("prefixItems", []), new.get("prefixItems", [])
        if len(old_prefix) != len(new_prefix):
            problems.append(f"{where}: tuple length changed from {len(old_prefix)} to {len(new_prefix)}")
        for i, (o, n) in enumerate(zip(old_prefix, new_prefix, strict=False)):
            problems += self.compare(o, n, f"{path}[{i}]", seen)
        return problems

    def _compare_object(self, old: Schema, new: Schema, path: str, seen: frozenset) -> list[str]:
        problems: list[str] = []
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name, old_prop in old_props.items():
            sub = f"{path}.{name}" if path else name
            if name not in new_props:
                problems.append(f"{sub}: property removed")
                continue
            if name in new_required and name not in old_required:
                problems.append(f"{sub}: property newly made required")
            problems += self.compare(old_prop, new_props[name], sub, seen)
        for name in new_props.keys() - old_props.keys():
            if name in new_required:
                problems.append(f"{f'{path}.{name}' if path else name}: new required property")
        return problems

    def _resolve(self, schema: Schema, side: int) -> Schema:
        while "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"cannot resolve external reference {ref}")
            target: Any = self.roots[side]
            for part in ref[2:].split("/"):
                target = target[part]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema

    def _variants(self, schema: Schema, side: int) -> list[Schema]:
        schema = self._resolve(schema, side)
        for union in ("anyOf", "oneOf"):
            if union in schema:
                return [v for member in schema[union] for v in self._variants(member, side)]
        if len(schema.get("allOf", [])) == 1:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self._variants({**schema["allOf"][0], **rest}, side)
        if isinstance(schema.get("type"), list):
            return [{**schema, "type": t} for t in schema["type"]]
        return [schema]


def _kind(schema: Schema) -> str:
    if isinstance(schema.get("type"), str):
        return schema["type"]
    values = _values(schema)
    if values:
        kinds = {_JSON_TYPES.get(type(v), "value") for v in values}
        return kinds.pop() if len(kinds) == 1 else "value"
    return "any"


def _group(variants: list[Schema]) -> dict[str, list[Schema]]:
    groups: dict[str, list[Schema]] = {}
    for v in variants:
        groups.setdefault(_kind(v), []).append(v)
    return groups


def _kinds(groups: dict[str, list[Schema]]) -> str:
    return " | ".join(sorted(groups))


def _values(schema: Schema) -> set | None:
    if "const" in schema:
        return {_hashable(schema["const"])}
    if "enum" in schema:
        return {_hashable(v) for v in schema["enum"]}
    return None


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def _tightened(old: Schema, new: Schema, where: str) -> list[str]:
    problems = []
    for key in _LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            problems.append(f"{where}: {key} tightened from {old.get(key)} to {new[key]}")
    for key in _UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            problems.append(f"{where}: {key} tightened from {old.get(key)} to {new[key]}")
    if "pattern" in new and new.get("pattern") != old.get("pattern"):
        problems.append(f"{where}: pattern changed from {old.get('pattern')!r} to {new['pattern']!r}")
    return problems


# --- snapshot files ---------------------------------------------------------------------------------


class SnapshotError(AssertionError):
    pass


def updating() -> bool:
    return os.environ.get(UPDATE_ENV) == "1"


def snapshot_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.json"


def dump(schema: Schema) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def check_snapshot(name: str, schema: Schema, folder: Path, *, update: bool = False) -> str | None:
    """Checks `schema` (named like "OrderPlaced.v1") against its snapshot in `folder`. Raises
    SnapshotError when the snapshot is missing or the change is incompatible; returns a note when
    the schema changed compatibly (None when unchanged). With update, rewrites the snapshot instead."""
    path = snapshot_path(folder, name)
    if update:
        changed = not path.exists() or path.read_text() != dump(schema)
        if changed:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(dump(schema))
        return f"{name}: snapshot written to {path}" if changed else None
    if not path.exists():
        raise SnapshotError(
            f"no schema snapshot for {name} (expected {path}). Every published event needs one, so a "
            f"later change cannot break its consumers unnoticed. Write it with `{REFRESH}` and commit it."
        )
    snapshot = json.loads(path.read_text())
    if problems := breaking_changes(snapshot, schema):
        event_type, _, version = name.rpartition(".v")
        listed = "\n".join(f"  - {p}" for p in problems)
        raise SnapshotError(
            f"{name} changed incompatibly with its published schema ({path}):\n{listed}\n"
            f"Keep {name} as it is and publish the change as a new version ({event_type} "
            f"v{int(version) + 1}: a new model with EVENT_VERSION = {int(version) + 1}). Only if {name} was never "
            f"released, accept the change with `{REFRESH}`."
        )
    if dump(snapshot) != dump(schema):
        return f"{name} changed compatibly since its snapshot; refresh {path} with `{REFRESH}`"
    return None
