"""The connector's catalog as documents: plain data for `qbflow catalog --json`, Markdown for docs/catalog.md.

    python -m qbflow.connector.docs > docs/catalog.md

Both are built from TRIGGERS and ACTIONS themselves (the input tables from each action's JSON Schema), so
the reference cannot drift from the code; tests/connector/test_catalog_doc.py fails when the page is stale.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from qbflow.catalog.entities import ENTITIES
from qbflow.connector.base import PATTERN_TEXT, Action
from qbflow.connector.refs import RefObject
from qbflow.connector.registry import ACTIONS
from qbflow.connector.triggers import TRIGGERS, Trigger

__all__ = ["REGENERATE", "catalog_document", "render_catalog_markdown", "schema_rows", "type_label"]

REGENERATE = "python -m qbflow.connector.docs > docs/catalog.md"


def trigger_document(t: Trigger) -> dict[str, Any]:
    """One trigger as plain data: key, title, kind, entity, description, output and its sample record."""
    return {"key": t.key, "title": t.title, "kind": t.kind.value, "entity": t.entity, "description": t.description,
            "output": t.output, "sample": t.sample_record()}


def action_document(a: Action) -> dict[str, Any]:
    """One action as plain data: key, title, description, entity, operation, input JSON Schema, output."""
    return {**a.describe(), "operation": a.operation}


def catalog_document() -> dict[str, list[dict[str, Any]]]:
    """Every trigger and action: {"triggers": [...], "actions": [...]} (what `qbflow catalog --json` prints)."""
    return {"triggers": [trigger_document(t) for t in TRIGGERS.values()],
            "actions": [action_document(a) for a in ACTIONS.values()]}


# --- JSON Schema -> input tables ---------------------------------------------------------------------------
_REFERENCE = RefObject.__name__  # a union with this branch is a reference (Id, email or name)


def _def_name(schema: dict) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def type_label(schema: dict) -> str:
    """A short human name for a property's type: "string", "date", "list of SalesLine", "reference", ..."""
    name = _def_name(schema)
    if name is not None:
        return name
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        present = [b for b in branches if b.get("type") != "null"]
        if any(_def_name(b) == _REFERENCE for b in present):
            return "reference"
        labels = list(dict.fromkeys(type_label(b) for b in present))
        return " or ".join(labels) if labels else "null"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type")
    if kind == "array":
        return f"list of {type_label(schema.get('items') or {})}"
    if kind == "string" and schema.get("format") in ("date", "date-time"):
        return schema["format"]
    if kind == "object":
        return "object"
    return str(kind) if kind else "any"


def _limits(schema: dict) -> list[str]:
    """Bounds worth telling a person filling in the form (lengths, ranges, item counts)."""
    branches = [b for b in (schema.get("anyOf") or [schema]) if b.get("type") != "null"]
    schema = branches[0] if len(branches) == 1 else schema
    notes = []
    if "minimum" in schema and "maximum" in schema:
        notes.append(f"from {_number(schema['minimum'])} to {_number(schema['maximum'])}")
    elif "exclusiveMinimum" in schema:
        notes.append(f"more than {_number(schema['exclusiveMinimum'])}"
                     + (f", at most {_number(schema['maximum'])}" if "maximum" in schema else ""))
    elif "minimum" in schema:
        notes.append(f"at least {_number(schema['minimum'])}")
    if schema.get("pattern") in PATTERN_TEXT:
        notes.append(PATTERN_TEXT[schema["pattern"]])
    if "maxLength" in schema:
        notes.append(f"at most {schema['maxLength']} characters")
    if "minItems" in schema or "maxItems" in schema:
        notes.append(f"{schema.get('minItems', 0)} to {schema.get('maxItems', 'any number of')} items")
    return notes


def _number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def schema_rows(schema: dict) -> list[tuple[str, str, bool, str]]:
    """(name, type, required, description) for each property of an object schema, in declaration order."""
    required = set(schema.get("required") or ())
    rows = []
    for name, prop in (schema.get("properties") or {}).items():
        text = prop.get("description") or ""
        notes = _limits(prop)
        default = prop.get("default")
        if default is not None:
            notes.append(f"default {json.dumps(default)}")
        if notes:
            text = f"{text} ({'; '.join(notes)})" if text else "; ".join(notes).capitalize()
        rows.append((name, type_label(prop), name in required, text))
    return rows


# --- Markdown ----------------------------------------------------------------------------------------------
def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _type_cell(label: str, defs: set[str]) -> str:
    """Type names of shared input types link to their section below."""
    for name in sorted(defs, key=len, reverse=True):
        if label == name or label.endswith(f" {name}"):
            return label[: len(label) - len(name)] + f"[{name}](#{name.lower()})"
    if label == "reference":
        return "[reference](#references)"
    return label


def _input_table(schema: dict, defs: set[str]) -> list[str]:
    rows = [(f"`{name}`", _type_cell(kind, defs), "yes" if required else "no", text)
            for name, kind, required, text in schema_rows(schema)]
    if not rows:
        return ["No input."]
    return _table(("Field", "Type", "Required", "Description"), rows)


def _entity_title(entity: str | None) -> str:
    if entity is None:
        return "Other"
    return ENTITIES[entity].title if entity in ENTITIES else entity


def render_catalog_markdown() -> str:
    """docs/catalog.md: the triggers table, then every action (grouped by entity) with its input fields and
    output, then the input types the actions share."""
    triggers = list(TRIGGERS.values())
    actions = list(ACTIONS.values())
    shared: dict[str, dict] = {}
    for a in actions:
        for name, definition in (a.input_schema().get("$defs") or {}).items():
            if shared.setdefault(name, definition) != definition:
                raise ValueError(f"two input types are called {name!r} with different schemas ({a.key})")
    names = set(shared)

    out = [
        "# Connector catalog",
        "",
        f"<!-- Generated from the catalog by `{REGENERATE}`; do not edit by hand. -->",
        "",
        f"{len(triggers)} triggers and {len(actions)} actions. `qbflow catalog --json` prints the same catalog as "
        "JSON (with each action's input JSON Schema); `qbflow action run KEY --connection NAME --input JSON` runs "
        "an action, and `qbflow trigger sample KEY --connection NAME` (or `--offline`) shows what a trigger's "
        "event carries.",
        "",
        "## Triggers",
        "",
        "Triggers poll QuickBooks; one poll per company serves every trigger of that company.",
        "",
    ]
    out += _table(("Key", "Title", "Entity", "Description", "Output"),
                  [(f"`{t.key}`", t.title, t.entity, t.description, t.output) for t in triggers])
    out += ["", "## Actions", ""]
    groups: dict[str, list[Action]] = {}
    for a in actions:
        groups.setdefault(_entity_title(a.entity), []).append(a)
    order = sorted(groups)
    out += _table(("Key", "Title", "Entity"), [(f"`{a.key}`", f"[{a.title}](#{a.key})", group)
                                               for group in order for a in groups[group]])
    for group in order:
        out += ["", f"### {group}"]
        for a in groups[group]:
            schema = a.input_schema()
            out += ["", f'<a id="{a.key}"></a>', "", f"#### {a.title}", "", f"Key: `{a.key}`", "",
                    a.description, "", f"**Input.** {schema.get('description') or ''}".rstrip(), ""]
            out += _input_table(schema, names)
            out += ["", f"**Output.** {a.output}"]
    out += [
        "",
        "## Input types",
        "",
        '<a id="references"></a>',
        "",
        "A **reference** field (a customer, vendor, account, product, ...) takes an Id (a number or a string of "
        "digits), an email address (customers, vendors, employees) or a name, matched exactly but ignoring case "
        "among active records; or an object spelled out as [RefObject](#refobject). No match, or more than one, "
        "is an error listing the candidates.",
    ]
    for name in sorted(shared):
        definition = shared[name]
        out += ["", f"### {name}", "", _cell(definition.get("description") or ""), ""]
        out += _input_table(definition, names)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_catalog_markdown())
