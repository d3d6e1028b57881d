"""Starting manual runs over HTTP: `POST /api/workflows/{name}/runs` (on SQLite and PostgreSQL) and the
dashboard's "Run now" form generated from the workflow's `inputs:`."""

from __future__ import annotations

import re

import httpx

from qbflow.engine.stored import store_workflow
from qbflow.engine.workflow import load_workflow_text
from qbflow.store import RunStore
from tests.engine.test_manual import STATEMENT
from tests.server.test_dashboard import Dashboard, dashboard  # noqa: F401 - the fixture
from tests.support.stores import WELCOME_YAML


async def test_the_api_starts_a_manual_run_with_checked_inputs(api: httpx.AsyncClient, runs: RunStore) -> None:
    store_workflow(runs, load_workflow_text(STATEMENT), None)
    started = await api.post("/api/workflows/Send statement/runs", json={"inputs": {"customer": "Cool Cars"}})
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["run"]["status"] == "queued" and body["run"]["workflow"] == "Send statement"
    run = runs.get_run(body["run_id"])
    assert run.event is not None and run.event.record == {
        "inputs": {"customer": "Cool Cars", "days": 30, "urgent": False}, "started_by": "api"}

    bad = await api.post("/api/workflows/Send statement/runs", json={"inputs": {"customer": 5, "dayz": 1}})
    assert bad.status_code == 422
    assert bad.json()["problems"] == ["dayz: unknown input 'dayz'; did you mean 'days'? (declared: customer, days, "
                                      "amount, urgent, since, tags)",
                                      "customer: expected a string, got int 5"]
    missing = await api.post("/api/workflows/Send statement/runs")
    assert missing.status_code == 422 and "required input 'customer' is missing" in missing.json()["problems"][0]
    assert (await api.post("/api/workflows/Nope/runs", json={})).status_code == 404
    assert len(runs.list_runs()) == 1


async def test_the_api_refuses_a_workflow_started_by_quickbooks(api: httpx.AsyncClient, runs: RunStore) -> None:
    store_workflow(runs, load_workflow_text(WELCOME_YAML), None)
    refused = await api.post("/api/workflows/welcome/runs", json={"inputs": {}})
    assert refused.status_code == 409
    assert "started by a QuickBooks change" in refused.json()["detail"]
    assert runs.list_runs() == []


async def test_run_now_in_the_dashboard(dashboard: Dashboard) -> None:  # noqa: F811
    await dashboard.login()
    store_workflow(dashboard.runs, load_workflow_text(STATEMENT), None)
    listing = await dashboard.page("/workflows")
    assert 'href="/workflows/run?name=Send%20statement"' in listing and "when started by hand" in listing
    form = await dashboard.page("/workflows/run?name=Send%20statement")
    for field in ("input.customer", "input.days", "input.amount", "input.urgent", "input.since", "input.tags"):
        assert f'name="{field}"' in form
    assert 'type="date"' in form and 'value="30"' in form
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]

    wrong = await dashboard.client.post("/workflows/run", data={
        "csrf": csrf, "name": "Send statement", "input.customer": "", "input.days": "many"})
    assert wrong.status_code == 422
    assert "required input &#39;customer&#39; is missing" in wrong.text
    assert "days: expected a whole number, got str &#39;many&#39;" in wrong.text
    assert dashboard.runs.list_runs() == []

    started = await dashboard.client.post("/workflows/run", data={
        "csrf": csrf, "name": "Send statement", "input.customer": "Birch Bay", "input.days": "7",
        "input.urgent": "on", "input.tags": '["q1"]'})
    assert started.status_code == 303
    run_id = int(started.headers["location"].rsplit("/", 1)[1])
    run = dashboard.runs.get_run(run_id)
    assert run.event is not None and run.event.record == {
        "inputs": {"customer": "Birch Bay", "days": 7, "urgent": True, "tags": ["q1"]}, "started_by": "dashboard"}
    assert "is queued" in await dashboard.page(f"/runs/{run_id}")

    forged = await dashboard.client.post("/workflows/run", data={"csrf": "forged", "name": "Send statement",
                                                                 "input.customer": "x"})
    assert forged.status_code == 403 and len(dashboard.runs.list_runs()) == 1
