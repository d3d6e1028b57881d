"""Validation of nested steps: file:line, field paths into branches and loops, unknown keys and step kinds
with "did you mean", ids unique across the tree, and what a template may read where (errors and warnings)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from qbflow.cli import app
from qbflow.engine.workflow import load_workflow_text, validate_workflow_text
from qbflow.store import SecretBox

HEAD = """name: nested
trigger:
  key: new_customer
  connection: acme
steps:
"""


def problems(steps: str, tail: str = "") -> list[tuple[int | None, str, str, str]]:
    return [(p.line, p.field, p.severity, p.message) for p in validate_workflow_text(HEAD + steps + tail)]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate((HEAD + text).splitlines(), 1) if needle in line)


def test_a_valid_tree_has_no_problems() -> None:
    steps = """  - id: check
    if: "trigger.Balance > 0"
    then:
      - id: each
        for_each: "{{ trigger.Lines }}"
        as: line
        steps:
          - id: note
            action: log
            input: {message: "{{ line.Amount }} at {{ loop.index }} of {{ trigger.Id }}"}
          - id: later
            set: {n: "{{ steps.note.output.message }}"}
  - id: wait_a_bit
    wait: 2h
"""
    assert problems(steps) == []
    workflow = load_workflow_text(HEAD + steps)
    assert workflow.step("later").kind == "set" and workflow.step("each").as_ == "line"


def test_a_nested_unknown_input_field_names_its_path_and_line() -> None:
    steps = """  - id: check
    if: "{{ trigger.Balance > 0 }}"
    then:
      - id: make
        action: create_customer
        input:
          display_nam: "{{ trigger.DisplayName }}"
"""
    (problem,) = problems(steps)
    assert problem[:3] == (line_of(steps, "display_nam"), "steps[0].then[0].input.display_nam", "error")
    assert "did you mean 'display_name'" in problem[3]


def test_unknown_keys_and_step_kinds_say_what_was_meant() -> None:
    steps = """  - id: check
    if: "{{ true }}"
    then:
      - id: loop
        fro_each: "{{ trigger.Lines }}"
    els:
      - id: x
        set: {a: 1}
"""
    found = problems(steps)
    assert (line_of(steps, "fro_each"), "steps[0].then[0].fro_each", "error",
            "unknown key 'fro_each'; did you mean 'for_each'?") in found
    assert (line_of(steps, "els:"), "steps[0].els", "error", "unknown key 'els'; did you mean 'else'?") in found


def test_a_step_without_a_kind_and_keys_of_another_kind_are_named() -> None:
    found = problems("""  - id: nothing
  - id: mixed
    set: {a: 1}
    then: []
""")
    assert any(p[1] == "steps[0]" and "a step needs one of the keys action, set, if" in p[3] for p in found)
    assert any(p[1] == "steps[1]" and "'then' does not belong to a 'set' step" in p[3] for p in found)


def test_step_ids_are_unique_across_the_tree() -> None:
    steps = """  - id: same
    set: {a: 1}
  - id: branch
    if: "{{ true }}"
    then:
      - id: same
        set: {a: 2}
"""
    found = problems(steps)
    assert [(p[1], p[2]) for p in found] == [("steps[1].then[0].id", "error")]
    assert "duplicate step id 'same': steps[0] (line 6) already uses it" in found[0][3]


def test_reading_a_branch_step_after_the_if_is_a_warning_and_the_file_stays_valid(tmp_path: Path) -> None:
    steps = """  - id: branch
    if: "{{ trigger.Balance > 0 }}"
    then:
      - id: inside
        set: {a: 1}
  - id: maybe
    when: "{{ trigger.Balance > 5 }}"
    set: {b: 2}
  - id: after
    set:
      a: "{{ steps.inside.output.a }}"
      b: "{{ steps.maybe.output.b }}"
"""
    found = problems(steps)
    assert [(p[0], p[1], p[2]) for p in found] == [
        (line_of(steps, 'a: "{{ steps.inside'), "steps[2].set.a", "warning"),
        (line_of(steps, 'b: "{{ steps.maybe'), "steps[2].set.b", "warning")]
    assert "runs only in then of if 'branch'" in found[0][3] and "has a `when`" in found[1][3]
    load_workflow_text(HEAD + steps)  # warnings do not make it invalid

    path = tmp_path / "nested.yaml"
    path.write_text(HEAD + steps)
    env = {"QBFLOW_DATA_DIR": str(tmp_path / "data"), "QBFLOW_SECRET_KEY": SecretBox.generate_key(),
           "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["workflow", "validate", str(path), "--no-check-connections"], env=env)
    assert result.exit_code == 0, result.output
    line = line_of(steps, 'a: "{{ steps.inside')
    assert f"{path}:{line}: steps[2].set.a: warning: template uses steps.inside" in result.output
    assert "ok: 'nested'" in result.output


def test_loop_steps_and_names_are_only_seen_inside_the_loop() -> None:
    steps = """  - id: each
    for_each: "{{ trigger.Lines }}"
    steps:
      - id: inner
        set: {a: "{{ item }}"}
  - id: after
    set:
      a: "{{ steps.inner.output.a }}"
      b: "{{ item }}"
      c: "{{ steps.later.output }}"
  - id: later
    set: {x: 1}
"""
    found = {p[1]: p for p in problems(steps)}
    assert set(found) == {"steps[1].set.a", "steps[1].set.b", "steps[1].set.c"}
    assert all(p[2] == "error" for p in found.values())
    assert "inside for_each 'each': after the loop read steps.each.output" in found["steps[1].set.a"][3]
    assert "unknown name 'item'" in found["steps[1].set.b"][3]
    assert "runs at or after this step (steps[2])" in found["steps[1].set.c"][3]


def test_on_error_sees_error_and_bad_wait_values_are_named() -> None:
    steps = """  - id: pause
    wait: soon
  - id: note
    set: {a: 1}
"""
    found = problems(steps, """on_error:
  - id: tell
    action: log
    input: {message: "{{ error.step }}: {{ error.message }} {{ oops }}"}
""")
    fields = {(p[1], p[2]) for p in found}
    assert ("steps[0].wait", "error") in fields
    assert ("on_error[0].input.message", "error") in fields  # `oops`, not `error`
    assert any("unknown name 'oops'" in p[3] for p in found) and not any("'error'" in p[3] for p in found)
