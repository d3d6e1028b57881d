"""schemathesis against the app's OpenAPI schema: every operation with generated requests (and the API token),
on a store holding a connection, workflows and runs of each status. No answer may be a server error (5xx),
and every answer must match what the schema documents for it."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from qbflow.engine.stored import store_workflow_text
from qbflow.store import ConnectionRecord, RunStore
from tests.server.conftest import API_TOKEN
from tests.support.stores import WELCOME_YAML, add_run

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
EXAMPLES = 20  # per operation and mode (valid and invalid requests)


@pytest.fixture
def api_schema(app: FastAPI, runs: RunStore, connection: ConnectionRecord):
    store_workflow_text(runs, WELCOME_YAML, connections=[connection.name])
    for number, status in enumerate(("running", "succeeded", "failed", "waiting_retry", "cancelled"), 1):
        add_run(runs, "welcome", str(number), status=status, steps=[
            {"step_id": "note", "input": {"message": "hello", "password": "hunter2"}, "output": {"logged": True}}])
    add_run(runs, "welcome", "9")  # queued
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_server_error_and_answers_match_the_schema(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len([op for op in operations if op.path.startswith("/api/")]) == 19, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                response = case.call(headers=AUTH)
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

            try:
                check()
            except Exception as error:
                raise AssertionError(f"{operation.label} ({mode.value} examples): {error}") from error
