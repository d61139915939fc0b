"""Every key of the config schema says what it is: a researcher reading
rl/core/config.schema.yaml (or a tool rendering it) finds a description for each one."""

from __future__ import annotations

from collections.abc import Iterator

from rl.core.config import load_schema


def _walk(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """(dotted key, its schema) for every property, however deeply nested: in
    `properties`, and in the schemas of `items`, `prefixItems` and `additionalProperties`
    (an array of objects, a mapping of objects)."""
    if not isinstance(schema, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        key = f"{path}.{name}" if path else name
        yield key, sub
        yield from _walk(sub, key)
    items = schema.get("items")
    for sub in items if isinstance(items, list) else [items]:
        yield from _walk(sub, f"{path}[]")
    for sub in schema.get("prefixItems", []):
        yield from _walk(sub, f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _walk(extra, f"{path}.*")


def test_walk_reaches_nested_keys():
    schema = {
        "properties": {
            "a": {"description": "x", "properties": {"b": {}}},
            "list": {"description": "x", "items": {"properties": {"c": {}}}},
            "map": {"description": "x", "additionalProperties": {"properties": {"d": {}}}},
        }
    }
    assert [key for key, _ in _walk(schema)] == ["a", "a.b", "list", "list[].c", "map", "map.*.d"]


def test_schema_has_top_level_description():
    assert str(load_schema().get("description", "")).strip()


def test_every_schema_key_has_a_description():
    keys = list(_walk(load_schema()))
    assert keys, "the schema has no properties"
    missing = [
        key
        for key, sub in keys
        if not isinstance(sub.get("description"), str) or not sub["description"].strip()
    ]
    assert not missing, (
        f"{len(missing)} config key(s) in rl/core/config.schema.yaml have no description: "
        f"{', '.join(missing)}. Add a `description` saying what the key is, its unit and how "
        f"it interacts with other keys."
    )
