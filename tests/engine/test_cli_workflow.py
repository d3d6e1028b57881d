"""`qbflow workflow validate` as a user runs it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from qbflow.cli import app
from qbflow.store import SecretBox
from tests.engine.test_workflow_files import INVOICE_FOLLOW_UP


def run(tmp_path: Path, *args: str):
    env = {"QBFLOW_DATA_DIR": str(tmp_path / "data"), "QBFLOW_SECRET_KEY": SecretBox.generate_key(),
           "COLUMNS": "200"}
    return CliRunner().invoke(app, ["workflow", "validate", *args], env=env)


def test_a_valid_file_is_reported_ok(tmp_path: Path) -> None:
    path = tmp_path / "follow-up.yaml"
    path.write_text(INVOICE_FOLLOW_UP)
    result = run(tmp_path, str(path), "--no-check-connections")
    assert result.exit_code == 0, result.output
    assert "ok: 'Invoice follow-up', trigger new_invoice" in result.output


def test_problems_name_file_line_and_field_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(INVOICE_FOLLOW_UP.replace("action: send_invoice", "action: send_invoce"))
    line = INVOICE_FOLLOW_UP.splitlines().index(
        next(text for text in INVOICE_FOLLOW_UP.splitlines() if "action: send_invoice" in text)) + 1
    result = run(tmp_path, str(tmp_path), "--no-check-connections")
    assert result.exit_code == 1
    assert f"{path}:{line}:" in result.output
    assert "send_invoce" in result.output and "did you mean 'send_invoice'" in result.output


def test_connections_are_checked_against_the_store(tmp_path: Path) -> None:
    path = tmp_path / "follow-up.yaml"
    path.write_text(INVOICE_FOLLOW_UP)
    result = run(tmp_path, str(path))
    assert result.exit_code == 1
    assert "no connection named 'acme'" in result.output


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "no such file" in result.output
