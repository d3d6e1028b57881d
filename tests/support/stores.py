"""qbflow's store for the tests of several folders: `store` and `runs` (fixtures, on every `db_url`: SQLite, then
PostgreSQL when given), a connection to the in-process sandbox stored as `qbflow connect` stores it, a stored
workflow's text, and runs brought to any status as a poll and the runner would.

    def test_something(runs: RunStore) -> None:          # (the folder's conftest.py imports the fixtures)
        runs.upsert_workflow("welcome", WELCOME_YAML, ...)
        run_id = add_run(runs, "welcome", "42", status="failed", error="boom")
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qbflow.connector.polling import PollCursor, TriggerEvent
from qbflow.sandbox.app import Sandbox
from qbflow.store import ConnectionRecord, RunStore, SecretBox, Store, TokenResult, open_store

__all__ = ["CONNECTION", "SANDBOX_BASE", "WELCOME_YAML", "add_run", "runs", "store", "store_sandbox_connection"]

SANDBOX_BASE = "http://sandbox.test"  # the in-process sandbox, reached through `sandbox_transport`
CONNECTION = "acme"


WELCOME_YAML = f"""\
name: welcome
description: Say hello to every new customer.
trigger:
  key: new_customer
  connection: {CONNECTION}
  poll_interval: 1m
steps:
  - id: note
    action: log
    input:
      message: "New customer {{{{ trigger.DisplayName }}}}"
"""


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """The store on SQLite and on PostgreSQL (when QBFLOW_TEST_POSTGRES_URL is set), with a key of its own."""
    opened = open_store(url=db_url, box=SecretBox([SecretBox.generate_key()]))
    yield opened
    opened.close()


@pytest.fixture
def runs(store: Store) -> RunStore:
    return RunStore(store.engine)


def store_sandbox_connection(store: Store, sandbox: Sandbox, realm: str, name: str = CONNECTION) -> ConnectionRecord:
    """A connection to the in-process sandbox's company `realm`, with real tokens, as `qbflow connect` stores it."""
    issued = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm, base_url=SANDBOX_BASE)
    return store.connections.add(
        name=name, realm_id=realm, client_id=sandbox.client_id, client_secret=sandbox.client_secret,
        company_name=sandbox.books.companies[realm].name if realm in sandbox.books.companies else None,
        api_base=SANDBOX_BASE, token_endpoint=f"{SANDBOX_BASE}/oauth2/v1/tokens/bearer",
        revocation_endpoint=f"{SANDBOX_BASE}/v2/oauth2/tokens/revoke", environment="local",
        tokens=TokenResult.from_expires_in(issued["access_token"], issued["expires_in"], issued["refresh_token"],
                                           issued["x_refresh_token_expires_in"]))


def add_run(runs: RunStore, workflow: str, record_id: str, *, status: str = "queued", error: str | None = None,
            steps: list[dict[str, Any]] | None = None, record: dict[str, Any] | None = None) -> int:
    """One run of the stored workflow `workflow` for a new_customer event of `record_id`, as a poll makes it,
    then brought to `status` (claimed and finished as the runner would); `steps` are ledger entries
    ({"step_id", "input", "output", "error", "status"}). Returns the run's id."""
    stored = runs.get_workflow(workflow)
    event = TriggerEvent(trigger_key="new_customer", entity="Customer", record_id=record_id, sync_token="0",
                         record=record or {"Id": record_id, "DisplayName": f"Customer {record_id}"},
                         dedup_key=f"new_customer:Customer:{record_id}:0", changed_at=datetime.now(UTC))
    (run_id,) = runs.record_poll(stored.id, "new_customer", CONNECTION, "realm-1", [event],
                                 PollCursor.start(datetime.now(UTC)).to_json())
    if status == "queued" and not steps:
        return run_id
    claimed = runs.claim_next_run()
    assert claimed is not None and claimed.id == run_id, "another run was due first"
    for step in steps or []:
        runs.mark_step_sent(run_id, step["step_id"], step.get("input"))
        if step.get("status", "succeeded") != "sent":
            runs.finish_step(run_id, step["step_id"], output=step.get("output"), error=step.get("error"),
                             status=step.get("status", "succeeded"))
    if status in ("waiting_retry", "waiting"):
        runs.finish_run(run_id, status, error=error, next_attempt_at=datetime.now(UTC) + timedelta(hours=1))
    elif status != "running":
        runs.finish_run(run_id, status, error=error)
    return run_id

