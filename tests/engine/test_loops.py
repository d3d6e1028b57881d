"""No self-made loops, with Intuit's webhooks on (each change is polled within a second): a workflow's own write
does not start it again, and two workflows feeding each other are paused by the breaker with one message."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from qbflow.store.models import RUN_SUCCEEDED
from tests.support.webhooks import SANDBOX_BASE, Stack, wait_for, webhook_stack

pytestmark = pytest.mark.usefixtures("isolated_data_dir")  # no QBFLOW_ setting of the machine's reaches it

NOTES_FLOW = "Note updated customers"


def notes_workflow(name: str, note: str, **trigger: str) -> dict:
    """Updated Customer -> Update Customer (its notes), in one request with the trigger's SyncToken."""
    return {"name": name,
            "trigger": {"key": "updated_customer", "connection": "acme", "poll_interval": "1h", **trigger},
            "steps": [{"id": "note", "action": "update_customer",
                       "input": {"id": "{{ trigger.Id }}", "sync_token": "{{ trigger.SyncToken }}",
                                 "notes": f"{note} (seen at SyncToken {{{{ trigger.SyncToken }}}})"}}]}


async def edit_customer(stack: Stack, customer_id: str, **fields: str) -> dict:
    """A change made in QuickBooks by a person (a sparse update through the sandbox's API)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.sandbox), base_url=SANDBOX_BASE) as api:
        headers = {"Authorization": f"Bearer {stack.access_token}", "Accept": "application/json"}
        url = f"/v3/company/{stack.realm}/customer"
        current = (await api.get(f"{url}/{customer_id}", headers=headers)).json()["Customer"]
        response = await api.post(url, headers=headers, json={"Id": customer_id, "SyncToken": current["SyncToken"],
                                                              "sparse": True, **fields})
    assert response.status_code == 200, response.text
    return response.json()["Customer"]


def runs_of(stack: Stack, workflow: str, customer_id: str) -> list:
    found = [stack.runs.get_run(r.id) for r in stack.runs.list_runs(workflow=workflow, limit=1000)]
    return sorted((r for r in found if r.event is not None and r.event.record_id == customer_id), key=lambda r: r.id)


def customer(stack: Stack, customer_id: str) -> dict:
    return stack.sandbox.books.get(stack.realm, "Customer", customer_id)


async def settled(stack: Stack, customer_id: str) -> None:
    """Until every change of the customer made so far has been delivered by webhook and polled: the engine's
    cursors have polled after the customer's last update and no run is in flight."""
    changed = customer(stack, customer_id)["MetaData"]["LastUpdatedTime"]
    await wait_for(lambda: len([d for d in stack.sandbox.webhooks.deliveries if d["ok"]]) and not
                   stack.sandbox.webhooks._pending, "the webhooks to be delivered")

    def polled_after_change() -> bool:
        cursors = [c for c in stack.runs.list_cursors() if c.trigger_key == "updated_customer"]
        return bool(cursors) and all(c.last_poll_at is not None and c.last_poll_at.isoformat() >= changed[:19]
                                     for c in cursors)

    await wait_for(polled_after_change, "a poll after the last change")
    await wait_for(lambda: not [r for r in stack.runs.list_runs(limit=1000) if r.status in ("queued", "running")],
                   "the runs to finish")


async def test_a_workflow_runs_once_per_outside_edit_and_never_for_its_own(tmp_path: Path) -> None:
    async with webhook_stack(tmp_path) as stack:
        stack.runs.upsert_workflow(NOTES_FLOW, None, notes_workflow(NOTES_FLOW, "Noted"))
        stack.engine.request_poll("acme")  # activation of the new trigger
        await wait_for(lambda: any(c.trigger_key == "updated_customer" for c in stack.runs.list_cursors()),
                       "the trigger to start")
        customer_id = await stack.create_customer("Loop-Free Gardens")
        stack.sandbox.clock.advance(1)

        for edit in range(1, 4):
            before = customer(stack, customer_id)["SyncToken"]
            await edit_customer(stack, customer_id, CompanyName=f"Loop-Free Gardens {edit}")
            await wait_for(lambda edit=edit: len([r for r in runs_of(stack, NOTES_FLOW, customer_id)
                                                 if r.status == RUN_SUCCEEDED]) == edit, f"run {edit}")
            await settled(stack, customer_id)  # our own write was delivered and polled too
            now = customer(stack, customer_id)
            # one edit by a person, one note by the workflow: two versions, one run
            assert int(now["SyncToken"]) == int(before) + 2, now
            assert now["Notes"] == f"Noted (seen at SyncToken {int(before) + 1})"

        runs = runs_of(stack, NOTES_FLOW, customer_id)
        assert [r.status for r in runs] == [RUN_SUCCEEDED] * 3
        assert stack.runs.get_workflow(NOTES_FLOW).enabled


async def test_a_workflow_may_opt_in_to_its_own_changes(tmp_path: Path) -> None:
    """`skip_changes_by: none`: its own note starts it again (here capped by a `when` on the notes)."""
    async with webhook_stack(tmp_path) as stack:
        flow = notes_workflow(NOTES_FLOW, "Noted", skip_changes_by="none")
        flow["steps"][0]["when"] = "{{ not (trigger.Notes | default('')).startswith('Noted') }}"
        stack.runs.upsert_workflow(NOTES_FLOW, None, flow)
        stack.engine.request_poll("acme")
        await wait_for(lambda: any(c.trigger_key == "updated_customer" for c in stack.runs.list_cursors()),
                       "the trigger to start")
        customer_id = await stack.create_customer("Self-Aware Gardens")
        stack.sandbox.clock.advance(1)
        await edit_customer(stack, customer_id, CompanyName="Self-Aware Gardens Ltd")
        await wait_for(lambda: len(runs_of(stack, NOTES_FLOW, customer_id)) == 2, "its own change to start it")
        await settled(stack, customer_id)
        runs = runs_of(stack, NOTES_FLOW, customer_id)
        assert [r.status for r in runs] == [RUN_SUCCEEDED] * 2
        assert [r.step("note").status for r in runs] == ["succeeded", "skipped"]


async def test_two_workflows_feeding_each_other_are_paused_with_one_message(tmp_path: Path) -> None:
    async with webhook_stack(tmp_path) as stack:
        stack.runs.upsert_workflow("Ping", None, notes_workflow("Ping", "Ping"))
        stack.runs.upsert_workflow("Pong", None, notes_workflow("Pong", "Pong"))
        stack.engine.request_poll("acme")
        await wait_for(lambda: len([c for c in stack.runs.list_cursors()
                                    if c.trigger_key == "updated_customer"]) == 2, "the triggers to start")
        customer_id = await stack.create_customer("Echo Gardens")
        stack.sandbox.clock.advance(1)
        await edit_customer(stack, customer_id, CompanyName="Echo Gardens Ltd")

        def paused() -> list:
            return [w for w in stack.runs.list_workflows() if w.name in ("Ping", "Pong") and not w.enabled]

        stopped = await wait_for(paused, "the breaker to pause a workflow", timeout=60)
        await settled(stack, customer_id)
        (first, *_) = stopped
        assert first.paused_reason is not None
        assert f"Customer {customer_id}" in first.paused_reason
        assert "'Ping'" in first.paused_reason and "'Pong'" in first.paused_reason
        assert "feed each other" in first.paused_reason and "qbflow workflow enable" in first.paused_reason
        # It stopped: nothing more runs, however long we wait for polls.
        token = customer(stack, customer_id)["SyncToken"]
        total = len(runs_of(stack, "Ping", customer_id)) + len(runs_of(stack, "Pong", customer_id))
        stack.engine.request_poll("acme")
        await settled(stack, customer_id)
        assert customer(stack, customer_id)["SyncToken"] == token
        assert len(runs_of(stack, "Ping", customer_id)) + len(runs_of(stack, "Pong", customer_id)) == total
        assert total <= 2 * 10  # each at most the breaker's limit (8) and a little
        # Enabling it again clears the reason.
        assert stack.runs.set_enabled(first.name, True).paused_reason is None
