"""The JSON API through httpx over the app in-process: each endpoint, the token, 404/409/422 answers that name
what is wrong, the CLI's rules for retry, and nothing secret in any answer. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from qbflow.sandbox.app import Sandbox
from qbflow.store import ConnectionRecord, RunStore, Store
from tests.server.conftest import API_TOKEN, SERVER_BASE
from tests.support.stores import CONNECTION, SANDBOX_BASE, WELCOME_YAML, add_run, store_sandbox_connection

HOOK_SECRET = "hook-secret-7c1e9d"
HOOK_YAML = f"""\
name: notify
trigger:
  key: new_customer
  connection: {CONNECTION}
steps:
  - id: post
    action: http.request
    input:
      url: https://hooks.example.com/qbflow
      headers:
        Authorization: "Bearer {HOOK_SECRET}"
      json:
        name: "{{{{ trigger.DisplayName }}}}"
"""
# Line 8 names an action that does not exist; line 4 a connection that is not stored.
BAD_YAML = """\
name: broken
trigger:
  key: new_customer
  connection: nowhere
steps:
  - id: make
    action: create_invoice_please
    input: {}
"""
STEP_SECRET = "step-token-5b3f0a"


async def add_workflow(api: httpx.AsyncClient, text: str = WELCOME_YAML, **params: str) -> httpx.Response:
    answer = await api.post("/api/workflows", json={"yaml": text}, params=params)
    assert answer.status_code in (200, 201), answer.text
    return answer


# --- the token ----------------------------------------------------------------------------------------------

def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every documented operation under /api, with its path parameters filled in."""
    return [(method.upper(), path.replace("{name}", "acme").replace("{run_id}", "1"))
            for path, operations in app.openapi()["paths"].items() if path.startswith("/api/")
            for method in operations]


async def test_every_api_route_needs_the_token(app: FastAPI, anonymous: httpx.AsyncClient) -> None:
    routes = api_routes(app)
    assert len(routes) >= 11
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {API_TOKEN}"},
                        {"Authorization": API_TOKEN}):
            answer = await anonymous.request(method, path, headers=headers)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.json() == {"detail": "a valid API token is required (Authorization: Bearer ...)"}
            assert answer.headers["www-authenticate"] == "Bearer"


async def test_the_schema_documents_every_operation(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths["/api/workflows"]) == {"get", "post"}
    assert set(paths["/api/connections/{name}"]) == {"delete"}
    assert set(paths["/api/runs/{run_id}/retry"]) == {"post"}
    assert "409" in paths["/api/runs/{run_id}/retry"]["post"]["responses"]
    body = paths["/api/workflows"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "text/yaml"}
    run = schema["components"]["schemas"]["RunDetailOut"]["properties"]
    assert {"event", "steps", "status", "error"} <= set(run)
    assert "access_token" not in str(schema["components"]["schemas"]["ConnectionOut"])


# --- connections --------------------------------------------------------------------------------------------

async def test_connections_list_their_state_and_never_a_secret(api: httpx.AsyncClient, store: Store,
                                                               connection: ConnectionRecord) -> None:
    store.connections.mark_needs_reconnect(CONNECTION, "Intuit refused the refresh token (invalid_grant)")
    answer = await api.get("/api/connections")
    assert answer.status_code == 200
    (listed,) = answer.json()
    assert listed["name"] == CONNECTION and listed["realm_id"] == connection.realm_id
    assert listed["company_name"] == connection.company_name and listed["environment"] == "local"
    assert listed["status"] == "needs_reconnect"
    assert listed["status_detail"] == "Intuit refused the refresh token (invalid_grant)"
    for secret in (connection.access_token, connection.refresh_token, connection.client_secret):
        assert secret not in answer.text


async def test_delete_revokes_at_intuit_then_removes(api: httpx.AsyncClient, store: Store, sandbox: Sandbox,
                                                     connection: ConnectionRecord) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url=SANDBOX_BASE) as qbo:
        url = f"/v3/company/{connection.realm_id}/companyinfo/{connection.realm_id}"
        auth = {"Authorization": f"Bearer {connection.access_token}", "Accept": "application/json"}
        assert (await qbo.get(url, headers=auth)).status_code == 200
        answer = await api.delete(f"/api/connections/{CONNECTION}")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"name": CONNECTION, "revoked": True,
                                 "detail": f"removed connection {CONNECTION!r}; its tokens were revoked at Intuit"}
        assert (await qbo.get(url, headers=auth)).status_code == 401  # the grant is gone at "Intuit"
    assert store.connections.list() == []
    again = await api.delete(f"/api/connections/{CONNECTION}")
    assert again.status_code == 404
    assert again.json() == {"detail": f"no connection named {CONNECTION!r}; GET /api/connections lists them"}


async def test_delete_keeps_a_connection_intuit_will_not_revoke_unless_forced(
        api: httpx.AsyncClient, store: Store, sandbox: Sandbox, realm: str) -> None:
    record = store_sandbox_connection(store, sandbox, realm, name="stuck")
    store.connections.add(**{key: getattr(record, key) for key in (
        "name", "realm_id", "client_id", "client_secret", "api_base", "token_endpoint", "environment")},
        tokens=_tokens(record), revocation_endpoint=None, replace=True)
    refused = await api.delete("/api/connections/stuck")
    assert refused.status_code == 502
    assert "could not revoke connection 'stuck'" in refused.json()["detail"]
    assert "force=true" in refused.json()["detail"]
    assert [r.name for r in store.connections.list()] == ["stuck"]
    forced = await api.delete("/api/connections/stuck", params={"force": "true"})
    assert forced.status_code == 200 and forced.json()["revoked"] is False
    assert store.connections.list() == []


def _tokens(record: ConnectionRecord):
    from qbflow.store import TokenResult

    return TokenResult(access_token=record.access_token, access_expires_at=record.access_expires_at,
                       refresh_token=record.refresh_token, refresh_expires_at=record.refresh_expires_at)


# --- workflows ----------------------------------------------------------------------------------------------

async def test_add_a_workflow_as_json_then_as_yaml_text(api: httpx.AsyncClient, runs: RunStore,
                                                       connection: ConnectionRecord) -> None:
    created = await api.post("/api/workflows", json={"yaml": WELCOME_YAML})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "welcome" and body["enabled"] is True and body["steps"] == 1
    assert body["trigger"] == {"kind": "qbo", "key": "new_customer", "connection": CONNECTION,
                               "poll_interval_seconds": 60.0, "filter": None}
    assert body["description"] == "Say hello to every new customer."
    assert body["definition"]["steps"][0]["action"] == "log"
    assert body["last_run"] is None and body["source_path"] is None
    stored = runs.get_workflow("welcome")
    assert stored.enabled and stored.definition["trigger"]["poll_interval"] == 60.0

    replaced = await api.post("/api/workflows", content=WELCOME_YAML.replace("1m", "2m"),
                              headers={"Content-Type": "text/yaml; charset=utf-8"}, params={"enabled": "false"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["trigger"]["poll_interval_seconds"] == 120.0 and replaced.json()["enabled"] is False
    assert [w.name for w in runs.list_workflows()] == ["welcome"]


async def test_a_bad_workflow_is_422_naming_line_and_field_and_nothing_is_stored(
        api: httpx.AsyncClient, runs: RunStore, connection: ConnectionRecord) -> None:
    answer = await api.post("/api/workflows", json={"yaml": BAD_YAML})
    assert answer.status_code == 422
    body = answer.json()
    assert body["detail"].startswith("the workflow is not valid (")
    by_field = {problem["field"]: problem for problem in body["problems"]}
    assert by_field["trigger.connection"]["line"] == 4
    assert "nowhere" in by_field["trigger.connection"]["message"]
    assert by_field["steps[0].action"]["line"] == 7
    assert "create_invoice_please" in by_field["steps[0].action"]["message"]
    assert runs.list_workflows() == []

    not_yaml = await api.post("/api/workflows", content="name: [unclosed", headers={"Content-Type": "text/yaml"})
    assert not_yaml.status_code == 422 and not_yaml.json()["problems"][0]["line"] == 1


async def test_bodies_that_are_not_a_workflow_say_what_is_expected(api: httpx.AsyncClient) -> None:
    wrong_key = await api.post("/api/workflows", json={"text": WELCOME_YAML})
    assert wrong_key.status_code == 422
    assert wrong_key.json()["detail"].startswith('expected a JSON object {"yaml": "<the workflow file>"}')
    assert "yaml: Field required" in wrong_key.json()["detail"]
    form = await api.post("/api/workflows", data={"yaml": WELCOME_YAML})
    assert form.status_code == 415
    assert "application/x-www-form-urlencoded" in form.json()["detail"]


async def test_validate_checks_like_add_and_stores_nothing(api: httpx.AsyncClient, runs: RunStore,
                                                          connection: ConnectionRecord) -> None:
    good = await api.post("/api/workflows/validate", json={"yaml": WELCOME_YAML})
    assert good.status_code == 200
    assert good.json() == {"valid": True, "name": "welcome", "trigger": "new_customer", "steps": 1, "problems": []}
    bad = await api.post("/api/workflows/validate", content=BAD_YAML, headers={"Content-Type": "text/yaml"})
    assert bad.status_code == 200 and bad.json()["valid"] is False
    assert {(p["line"], p["field"]) for p in bad.json()["problems"]} >= {(4, "trigger.connection"),
                                                                        (7, "steps[0].action")}
    assert runs.list_workflows() == []


async def test_list_get_enable_disable(api: httpx.AsyncClient, runs: RunStore, connection: ConnectionRecord) -> None:
    await add_workflow(api)
    await add_workflow(api, HOOK_YAML)
    first = add_run(runs, "welcome", "1", status="failed", error="boom")
    newest = add_run(runs, "welcome", "2", status="succeeded")
    listed = (await api.get("/api/workflows")).json()
    assert [w["name"] for w in listed] == ["notify", "welcome"]
    welcome = listed[1]
    assert welcome["last_run"]["id"] == newest != first and welcome["last_run"]["status"] == "succeeded"
    assert welcome["next_poll_at"] is not None  # never polled: due now
    assert welcome["last_poll_at"] is not None and "definition" not in welcome  # the poll that made the runs

    one = await api.get("/api/workflows/welcome")
    assert one.status_code == 200 and one.json()["definition"]["name"] == "welcome"

    off = await api.post("/api/workflows/welcome/disable")
    assert off.status_code == 200 and off.json()["enabled"] is False and off.json()["next_poll_at"] is None
    assert not runs.get_workflow("welcome").enabled
    on = await api.post("/api/workflows/welcome/enable")
    assert on.status_code == 200 and on.json()["enabled"] is True
    assert runs.get_workflow("welcome").enabled

    for method, path in (("GET", "/api/workflows/nope"), ("POST", "/api/workflows/nope/enable"),
                         ("POST", "/api/workflows/nope/disable")):
        missing = await api.request(method, path)
        assert missing.status_code == 404
        assert missing.json() == {"detail": "no workflow named 'nope'; GET /api/workflows lists them"}


async def test_a_definition_shows_no_secret(api: httpx.AsyncClient, connection: ConnectionRecord) -> None:
    created = await add_workflow(api, HOOK_YAML)
    assert HOOK_SECRET not in created.text
    shown = await api.get("/api/workflows/notify")
    assert shown.json()["definition"]["steps"][0]["input"]["headers"] == {"Authorization": "***"}
    assert HOOK_SECRET not in shown.text


# --- runs ---------------------------------------------------------------------------------------------------

async def test_runs_newest_first_filtered_and_paged(api: httpx.AsyncClient, runs: RunStore,
                                                   connection: ConnectionRecord) -> None:
    await add_workflow(api)
    await add_workflow(api, HOOK_YAML)
    ids = [add_run(runs, "welcome", str(n), status="failed" if n % 2 else "succeeded") for n in range(1, 6)]
    other = add_run(runs, "notify", "9")
    everything = (await api.get("/api/runs")).json()
    assert [r["id"] for r in everything["runs"]] == [other, *reversed(ids)]
    assert everything["next_before_id"] is None
    assert everything["runs"][0] == {**everything["runs"][0], "workflow": "notify", "status": "queued", "attempt": 0}

    failed = (await api.get("/api/runs", params={"workflow": "welcome", "status": "failed"})).json()["runs"]
    assert [r["id"] for r in failed] == [ids[4], ids[2], ids[0]]

    page = (await api.get("/api/runs", params={"workflow": "welcome", "limit": 2})).json()
    assert [r["id"] for r in page["runs"]] == [ids[4], ids[3]] and page["next_before_id"] == ids[3]
    page = (await api.get("/api/runs", params={"workflow": "welcome", "limit": 2,
                                               "before_id": page["next_before_id"]})).json()
    assert [r["id"] for r in page["runs"]] == [ids[2], ids[1]]
    page = (await api.get("/api/runs", params={"workflow": "welcome", "limit": 2,
                                               "before_id": page["next_before_id"]})).json()
    assert [r["id"] for r in page["runs"]] == [ids[0]] and page["next_before_id"] is None


async def test_a_waiting_run_is_listed_filtered_and_shown(api: httpx.AsyncClient, runs: RunStore,
                                                        connection: ConnectionRecord) -> None:
    await add_workflow(api)
    add_run(runs, "welcome", "1", status="succeeded")
    waiting = add_run(runs, "welcome", "2", status="waiting", steps=[
        {"step_id": "later", "status": "pending", "input": {"until": "2030-01-01T00:00:00+00:00"}}])
    listed = (await api.get("/api/runs", params={"status": "waiting"})).json()["runs"]
    assert [(r["id"], r["status"]) for r in listed] == [(waiting, "waiting")]
    assert listed[0]["next_attempt_at"] is not None
    shown = (await api.get(f"/api/runs/{waiting}")).json()
    assert shown["status"] == "waiting" and shown["steps"][0]["step_id"] == "later"


async def test_runs_filters_that_name_nothing(api: httpx.AsyncClient) -> None:
    unknown = await api.get("/api/runs", params={"workflow": "nope"})
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "no workflow named 'nope'; GET /api/workflows lists them"}
    bad_status = await api.get("/api/runs", params={"status": "exploded"})
    assert bad_status.status_code == 422
    (problem,) = bad_status.json()["detail"]
    assert problem["loc"] == ["query", "status"] and problem["input"] == "exploded"
    assert "'failed'" in problem["msg"] and "'waiting_retry'" in problem["msg"]
    bad_limit = await api.get("/api/runs", params={"limit": 0})
    assert bad_limit.status_code == 422 and bad_limit.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_one_run_with_its_event_and_steps_secrets_masked(api: httpx.AsyncClient, runs: RunStore,
                                                               connection: ConnectionRecord) -> None:
    await add_workflow(api, HOOK_YAML)
    run_id = add_run(runs, "notify", "7", status="failed", error="post: the hook answered 500", record={
        "Id": "7", "DisplayName": "Ada", "api_key": "record-key-42"}, steps=[
        {"step_id": "post", "input": {"url": "https://hooks.example.com/qbflow",
                                      "headers": {"Authorization": f"Bearer {STEP_SECRET}"}},
         "status": "failed", "error": {"message": "the hook answered 500", "status": 500,
                                       "response": {"session_token": STEP_SECRET}}}])
    answer = await api.get(f"/api/runs/{run_id}")
    assert answer.status_code == 200
    run = answer.json()
    assert run["id"] == run_id and run["status"] == "failed" and run["attempt"] == 1
    assert run["error"] == "post: the hook answered 500"
    assert run["event"]["record_id"] == "7" and run["event"]["entity"] == "Customer"
    assert run["event"]["record"] == {"Id": "7", "DisplayName": "Ada", "api_key": "***"}
    (step,) = run["steps"]
    assert step["step_id"] == "post" and step["status"] == "failed" and step["attempts"] == 1
    assert step["input"]["headers"] == {"Authorization": "***"}
    assert step["error"] == {"message": "the hook answered 500", "status": 500, "response": {"session_token": "***"}}
    assert step["started_at"] and step["finished_at"] and step["duration_seconds"] >= 0
    assert STEP_SECRET not in answer.text and "record-key-42" not in answer.text

    missing = await api.get("/api/runs/999999")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no run with id 999999; GET /api/runs lists them"}
    assert (await api.get("/api/runs/0")).status_code == 422
    assert (await api.get("/api/runs/abc")).status_code == 422


@pytest.mark.parametrize(("status", "previous"), [("failed", "failed"), ("waiting_retry", "waiting_retry"),
                                                  ("cancelled", "cancelled")])
async def test_retry_queues_a_failed_waiting_or_cancelled_run(api: httpx.AsyncClient, runs: RunStore,
                                                             connection: ConnectionRecord, status: str,
                                                             previous: str) -> None:
    await add_workflow(api)
    run_id = add_run(runs, "welcome", "1", status=status, error="QuickBooks said no")
    answer = await api.post(f"/api/runs/{run_id}/retry")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["previous_status"] == previous and body["run"]["status"] == "queued" and body["run"]["error"] is None
    assert body["detail"] == f"run {run_id} was {previous}; it is queued again"
    assert runs.get_run(run_id).status == "queued"
    again = await api.post(f"/api/runs/{run_id}/retry")  # like `qbflow runs retry`: already queued is fine
    assert again.status_code == 200 and again.json()["detail"] == f"run {run_id} is already queued"


@pytest.mark.parametrize(("status", "why"), [("succeeded", "it succeeded"), ("running", "it is running")])
async def test_retry_refuses_what_cannot_be_retried(api: httpx.AsyncClient, runs: RunStore,
                                                   connection: ConnectionRecord, status: str, why: str) -> None:
    await add_workflow(api)
    run_id = add_run(runs, "welcome", "1", status=status)
    answer = await api.post(f"/api/runs/{run_id}/retry")
    assert answer.status_code == 409
    assert answer.json() == {"detail": f"run {run_id} cannot be retried: {why} (only failed, waiting_retry or "
                                       f"cancelled runs can be)"}
    assert runs.get_run(run_id).status == status
    assert (await api.post("/api/runs/424242/retry")).status_code == 404


# --- nothing secret, anywhere --------------------------------------------------------------------------------

async def test_no_answer_carries_a_token_or_the_client_secret(app: FastAPI, store: Store, runs: RunStore,
                                                             connection: ConnectionRecord) -> None:
    bodies: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        bodies.append(response.text + str(response.headers))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVER_BASE,
                                 headers={"Authorization": f"Bearer {API_TOKEN}"},
                                 event_hooks={"response": [keep]}) as api:
        await add_workflow(api)
        await add_workflow(api, HOOK_YAML)
        run_id = add_run(runs, "notify", "3", status="failed", steps=[
            {"step_id": "post", "status": "failed", "input": {"headers": {"Authorization": f"Bearer {STEP_SECRET}"}},
             "error": {"message": "no"}}])
        for path in ("/api/connections", "/api/workflows", "/api/workflows/notify", "/api/runs",
                     f"/api/runs/{run_id}", "/openapi.json", "/docs", "/healthz"):
            assert (await api.get(path)).status_code == 200, path
        await api.post("/api/workflows/validate", json={"yaml": HOOK_YAML})
        await api.post(f"/api/runs/{run_id}/retry")
        await api.post("/api/workflows/notify/disable")
        await api.delete(f"/api/connections/{CONNECTION}")
        await api.get("/api/connections")
    assert len(bodies) >= 15
    record = connection
    secrets = [record.access_token, record.refresh_token, record.client_secret, API_TOKEN, HOOK_SECRET, STEP_SECRET,
               store.box.derive("dashboard session").hex()]
    for body in bodies:
        for secret in secrets:
            assert secret not in body


async def test_a_name_no_database_can_hold_is_a_problem_not_a_crash(api: httpx.AsyncClient, runs: RunStore,
                                                                    connection: ConnectionRecord) -> None:
    text = WELCOME_YAML.replace("name: welcome", 'name: "wel\\0come"')
    answer = await api.post("/api/workflows", json={"yaml": text})
    assert answer.status_code == 422
    assert answer.json()["problems"] == [{"line": None, "field": "name",
                                          "message": "a workflow name cannot contain a NUL character (\\0)",
                                          "severity": "error"}]
    assert runs.list_workflows() == []
    assert (await api.get("/api/workflows/wel%00come")).status_code == 404
    assert (await api.get("/api/runs", params={"workflow": "wel\0come"})).status_code == 404
