"""docs/catalog.md is generated from the catalog; it must say what the code does."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

from qbflow.connector.docs import REGENERATE, catalog_document, render_catalog_markdown, schema_rows, type_label
from qbflow.connector.registry import ACTIONS
from qbflow.connector.triggers import TRIGGERS

CATALOG_MD = Path(__file__).resolve().parents[2] / "docs" / "catalog.md"


def test_docs_catalog_md_is_up_to_date() -> None:
    expected = render_catalog_markdown()
    current = CATALOG_MD.read_text(encoding="utf-8") if CATALOG_MD.exists() else ""
    if current != expected:
        diff = "".join(list(difflib.unified_diff(current.splitlines(True), expected.splitlines(True),
                                                 "docs/catalog.md", "generated", n=1))[:40])
        raise AssertionError(f"docs/catalog.md is stale: regenerate it with `{REGENERATE}` (from the repository "
                             f"root) and commit it.\n{diff}")


def test_the_module_prints_the_page() -> None:
    result = subprocess.run([sys.executable, "-m", "qbflow.connector.docs"], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout == render_catalog_markdown()


def test_the_page_covers_every_trigger_and_action_with_its_input_fields() -> None:
    page = render_catalog_markdown()
    for t in TRIGGERS.values():
        assert f"| `{t.key}` | {t.title} |" in page
    for a in ACTIONS.values():
        section = page.split(f"#### {a.title}\n\nKey: `{a.key}`\n", 1)[1].split("\n#### ", 1)[0]
        for name, _kind, required, _text in schema_rows(a.input_schema()):
            assert f"| `{name}` |" in section and f"| {'yes' if required else 'no'} |" in section, (a.key, name)
        assert f"**Output.** {a.output}" in section
    create_invoice = page.split("#### Create Invoice\n", 1)[1].split("\n#### ", 1)[0]
    assert "| `customer` | [reference](#references) | yes |" in create_invoice
    assert "| `lines` | list of [SalesLine](#salesline) | yes |" in create_invoice
    assert "| `txn_date` | date | no |" in create_invoice
    assert "**Output.** The Invoice as QuickBooks returns it" in create_invoice
    # A pipe inside a description is escaped, so it cannot split a table cell.
    assert '{"id"\\|"email"\\|"name": ...}' in page


def test_type_labels_read_like_a_form() -> None:
    assert type_label({"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]}) == "date"
    assert type_label({"type": "array", "items": {"$ref": "#/$defs/SalesLine"}}) == "list of SalesLine"
    assert type_label({"enum": ["Cash", "Check"], "type": "string"}) == "one of `Cash`, `Check`"
    assert type_label({"oneOf": [{"type": "string"}, {"type": "integer"}, {"$ref": "#/$defs/RefObject"}]}) \
        == "reference"
    assert type_label({"anyOf": [{"type": "object", "additionalProperties": True}, {"type": "null"}]}) == "object"


def test_catalog_document_is_plain_json_data() -> None:
    document = catalog_document()
    assert [t["key"] for t in document["triggers"]] == list(TRIGGERS)
    assert [a["key"] for a in document["actions"]] == list(ACTIONS)
    first = document["actions"][0]
    assert set(first) >= {"key", "title", "description", "input_schema", "output", "entity"}
    assert set(document["triggers"][0]) >= {"key", "title", "description", "output", "entity", "sample"}
