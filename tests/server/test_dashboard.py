"""The dashboard over HTTP (httpx on the ASGI app): login, CSRF, what each page lists, the connect flow against a
real `qbflow sandbox` process, and that no page ever shows a secret."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from qbflow.server import ServerConfig, create_app
from qbflow.server.auth import load_or_create_api_token
from qbflow.settings import Settings
from qbflow.store import RunStore, SecretBox, Store, TokenResult, open_store
from tests.support.connect import CLIENT_ID, CLIENT_SECRET
from tests.support.sandbox import running_sandbox

API_TOKEN = "dashboard-api-token-for-tests-0123456789"
ACCESS = "access-token-SECRET-aaaaaaaaaaaa"
REFRESH = "refresh-token-SECRET-bbbbbbbbbbb"
APP_SECRET = "client-secret-SECRET-ccccccccc"
SECRETS = (API_TOKEN, ACCESS, REFRESH, APP_SECRET, CLIENT_SECRET)
BASE = "http://testserver"

WORKFLOW_YAML = """\
name: Greet new customers
trigger:
  key: new_customer
  connection: acme
  poll_interval: 30s
steps:
  - id: say
    action: log
    input: {message: "Hello {{ trigger.DisplayName }}"}
"""

BAD_WORKFLOW_YAML = """\
name: Broken
trigger:
  key: new_custmer
  connection: acme
steps:
  - id: say
    action: log
    input: {mesage: "hi"}
"""


@pytest.fixture(autouse=True)
def _clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("QBFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("QBFLOW_DATA_DIR", str(tmp_path / "data"))


@dataclass
class Dashboard:
    client: httpx.AsyncClient
    store: Store
    runs: RunStore

    async def csrf(self, path: str = "/") -> str:
        page = await self.client.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text
        return found.group(1)

    async def login(self, token: str = API_TOKEN, next_url: str = "/") -> httpx.Response:
        csrf = await self.csrf("/login")
        return await self.client.post("/login", data={"token": token, "csrf": csrf, "next": next_url})

    async def page(self, path: str) -> str:
        response = await self.client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        assert_no_secrets(response.text)
        return response.text


def assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.fixture
async def dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Dashboard]:
    monkeypatch.setenv("QBFLOW_CLIENT_ID", CLIENT_ID)  # the Intuit app, as for `qbflow connect`
    monkeypatch.setenv("QBFLOW_CLIENT_SECRET", CLIENT_SECRET)
    settings = Settings(data_dir=tmp_path / "data", api_token=SecretStr(API_TOKEN))
    store = open_store(settings, url=f"sqlite:///{tmp_path / 'qbflow.sqlite3'}",
                       box=SecretBox([SecretBox.generate_key()]))
    token, _ = load_or_create_api_token(settings)
    app = create_app(ServerConfig(store=store, settings=settings, api_token=token))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield Dashboard(client, store, RunStore(store.engine))
    store.close()


def add_connection(store: Store, name: str = "acme", company: str = "Sandbox Company_US_1") -> None:
    now = datetime.now(UTC)
    store.connections.add(name=name, realm_id="9130350000000001", client_id="app-id", client_secret=APP_SECRET,
                          tokens=TokenResult(access_token=ACCESS, access_expires_at=now + timedelta(hours=1),
                                             refresh_token=REFRESH, refresh_expires_at=now + timedelta(days=100)),
                          api_base="http://127.0.0.1:1", token_endpoint="http://127.0.0.1:1/token",
                          company_name=company, environment="local")


def add_workflow(runs: RunStore, name: str = "Greet new customers", enabled: bool = True) -> int:
    definition = {"name": name, "trigger": {"key": "new_customer", "connection": "acme", "poll_interval": 30.0},
                  "steps": [{"id": "say", "action": "log", "input": {"message": "hi"}}]}
    return runs.upsert_workflow(name, None, definition, enabled=enabled).id


def add_runs(runs: RunStore, workflow_id: int, count: int, start: int = 0) -> list[int]:
    events = [{"dedup_key": f"Customer:{i}:0", "entity": "Customer", "record_id": str(i), "sync_token": "0",
               "record": {"Id": str(i), "DisplayName": f"Customer {i}"}} for i in range(start, start + count)]
    return runs.record_poll(workflow_id, "new_customer", "acme", "9130350000000001", events, "{}")


def failed_run(runs: RunStore, workflow_id: int, start: int = 100) -> int:
    [run_id] = add_runs(runs, workflow_id, 1, start=start)
    claimed = runs.claim_next_run()
    assert claimed is not None and claimed.id == run_id
    runs.mark_step_sent(run_id, "say", {"message": "hi", "access_token": ACCESS,
                                        "headers": {"Authorization": f"Bearer {ACCESS}"}})
    runs.finish_step(run_id, "say", status="failed", error={"message": "Duplicate Name Exists Error",
                                                             "code": "6240", "refresh_token": REFRESH})
    runs.finish_run(run_id, "failed", error="say: [6240] Duplicate Name Exists Error")
    return run_id


# --- login -----------------------------------------------------------------------------------------------------

async def test_pages_need_a_login(dashboard: Dashboard) -> None:
    for path in ("/", "/workflows", "/runs?status=failed", "/runs/1", "/oauth/callback?code=x&state=y"):
        response = await dashboard.client.get(path)
        assert response.status_code == 303, path
        location = response.headers["location"]
        assert location.startswith("/login?next=")
        assert dict(parse_qsl(urlsplit(location).query))["next"] == path
    page = await dashboard.client.get("/login")
    assert page.status_code == 200 and "API token" in page.text and 'type="password"' in page.text


async def test_a_wrong_token_is_refused_and_says_so(dashboard: Dashboard) -> None:
    response = await dashboard.login("not-the-token")
    assert response.status_code == 401
    assert "That is not the API token" in response.text
    assert "not-the-token" not in response.text
    assert (await dashboard.client.get("/")).status_code == 303


async def test_login_goes_to_next_and_logout_ends_the_session(dashboard: Dashboard) -> None:
    response = await dashboard.login(next_url="/runs?status=failed")
    assert response.status_code == 303 and response.headers["location"] == "/runs?status=failed"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "Runs" in await dashboard.page("/runs")
    csrf = await dashboard.csrf("/")
    response = await dashboard.client.post("/logout", data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert (await dashboard.client.get("/")).status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x",
                                    "http:/evil.example", "evil.example", "/\r\nLocation: x"])
async def test_an_open_redirect_is_refused(dashboard: Dashboard, target: str) -> None:
    form = await dashboard.client.get("/login?" + urlencode({"next": target}))
    assert f'name="next" value="{target}"' not in form.text
    response = await dashboard.login(next_url=target)
    assert response.status_code == 303 and response.headers["location"] == "/"


async def test_forms_without_the_csrf_token_are_refused(dashboard: Dashboard) -> None:
    assert (await dashboard.client.post("/login", data={"token": API_TOKEN})).status_code == 403
    await dashboard.login()
    workflow_id = add_workflow(dashboard.runs, enabled=False)
    run_id = failed_run(dashboard.runs, workflow_id)
    add_connection(dashboard.store)
    posts = [("/workflows/state", {"name": "Greet new customers", "enabled": "on"}),
             (f"/runs/{run_id}/retry", {}),
             ("/connections/disconnect", {"name": "acme"}),
             ("/connect", {"name": "other", "environment": "sandbox"}),
             ("/logout", {})]
    for path, data in posts:
        for csrf in (None, "forged"):
            response = await dashboard.client.post(path, data=data if csrf is None else {**data, "csrf": csrf})
            assert response.status_code == 403, path
            assert "the form has expired or was not sent by this dashboard" in response.text
    upload = await dashboard.client.post("/workflows/upload", files={"file": ("w.yaml", WORKFLOW_YAML.encode())})
    assert upload.status_code == 403
    # Nothing changed.
    assert not dashboard.runs.get_workflow("Greet new customers").enabled
    assert dashboard.runs.get_run(run_id).status == "failed"
    assert [c.name for c in dashboard.store.connections.list()] == ["acme"]
    assert (await dashboard.client.get("/")).status_code == 200  # still logged in


# --- pages ----------------------------------------------------------------------------------------------------

async def test_the_overview_lists_connections_workflows_and_runs(dashboard: Dashboard) -> None:
    add_connection(dashboard.store)
    add_connection(dashboard.store, "stale", "Stale Books")
    dashboard.store.connections.mark_needs_reconnect("stale", "Intuit refused the refresh token")
    on = add_workflow(dashboard.runs)
    add_workflow(dashboard.runs, "Idle workflow", enabled=False)
    [run_id] = add_runs(dashboard.runs, on, 1)
    await dashboard.login()
    page = await dashboard.page("/")
    for text in ("acme", "Sandbox Company_US_1", "stale", "Stale Books", "needs reconnect",
                 "Intuit refused the refresh", "Greet new customers", "Idle workflow", "Turn Idle workflow on",
                 "Turn Greet new customers off", f"#{run_id}", "queued", "Connect QuickBooks",
                 "at the next cycle"):
        assert text in page, text
    assert re.search(r'data-connection="acme">.*?badge ok">ok<', page, re.S)


async def test_workflows_switch_on_and_off(dashboard: Dashboard) -> None:
    add_workflow(dashboard.runs, enabled=False)
    await dashboard.login()
    csrf = await dashboard.csrf("/workflows")
    response = await dashboard.client.post("/workflows/state", data={"name": "Greet new customers", "enabled": "on",
                                                                     "csrf": csrf, "next": "https://evil.example"})
    assert response.status_code == 303 and response.headers["location"] == "/workflows"
    assert dashboard.runs.get_workflow("Greet new customers").enabled
    assert "Workflow &#39;Greet new customers&#39; is now on." in await dashboard.page("/workflows")
    response = await dashboard.client.post("/workflows/state", data={"name": "Nope", "enabled": "off", "csrf": csrf})
    assert "No workflow named &#39;Nope&#39;" in (await dashboard.client.get(response.headers["location"])).text


async def test_uploading_a_workflow_validates_then_stores_it(dashboard: Dashboard) -> None:
    add_connection(dashboard.store)
    await dashboard.login()
    csrf = await dashboard.csrf("/workflows")
    bad = await dashboard.client.post("/workflows/upload", data={"csrf": csrf, "enable": "1"},
                                      files={"file": ("broken.yaml", BAD_WORKFLOW_YAML.encode())})
    assert bad.status_code == 400
    assert "broken.yaml was not stored" in bad.text
    assert "<td>3</td><td><code>trigger.key</code></td>" in bad.text and "new_customer" in bad.text
    assert "<td>8</td><td><code>steps[0].input.mesage</code></td>" in bad.text
    assert dashboard.runs.list_workflows() == []

    good = await dashboard.client.post("/workflows/upload", data={"csrf": csrf},
                                       files={"file": ("greet.yaml", WORKFLOW_YAML.encode())})
    assert good.status_code == 303
    page = await dashboard.page("/workflows")
    assert "greet.yaml: workflow &#39;Greet new customers&#39; added (off), trigger new_customer, 1 step(s)." in page
    stored = dashboard.runs.get_workflow("Greet new customers")
    assert not stored.enabled and stored.definition["trigger"]["poll_interval"] == 30.0

    empty = await dashboard.client.post("/workflows/upload", data={"csrf": csrf},
                                        files={"file": ("", b"")})
    assert empty.status_code in (400, 422)


async def test_runs_are_filtered_and_paged_newest_first(dashboard: Dashboard) -> None:
    first = add_workflow(dashboard.runs)
    other = add_workflow(dashboard.runs, "Other")
    failed = failed_run(dashboard.runs, other)
    ids = add_runs(dashboard.runs, first, 30)
    newest_first = sorted([*ids, failed], reverse=True)
    await dashboard.login()
    page = await dashboard.page("/runs")
    assert [int(n) for n in re.findall(r'data-run="(\d+)"', page)] == newest_first[:25]
    older = re.search(r'href="([^"]+)">Older', page)
    assert older
    rest = await dashboard.page(older.group(1).replace("&amp;", "&"))
    assert [int(n) for n in re.findall(r'data-run="(\d+)"', rest)] == newest_first[25:]
    assert "Newest" in rest and "Older" not in rest

    only_failed = await dashboard.page("/runs?status=failed")
    assert re.findall(r'data-run="(\d+)"', only_failed) == [str(failed)]
    only_other = await dashboard.page("/runs?workflow=Other")
    assert re.findall(r'data-run="(\d+)"', only_other) == [str(failed)]
    bad = await dashboard.client.get("/runs?status=broken")
    assert bad.status_code == 400 and "Unknown status &#39;broken&#39;: choose one of" in bad.text
    missing = await dashboard.client.get("/runs?workflow=Nope")
    assert missing.status_code == 404 and "No workflow is named &#39;Nope&#39;" in missing.text


async def test_a_run_shows_its_steps_with_secrets_masked_and_can_be_retried(dashboard: Dashboard) -> None:
    workflow_id = add_workflow(dashboard.runs)
    run_id = failed_run(dashboard.runs, workflow_id)
    await dashboard.login()
    page = await dashboard.page(f"/runs/{run_id}")
    for text in ("failed", "Duplicate Name Exists Error", "Step 1: say", "Input", "Error", "&#34;***&#34;",
                 "Customer 100", "new_customer", "Retry this run"):
        assert text in page, text
    assert (await dashboard.client.get("/runs/999")).status_code == 404

    csrf = await dashboard.csrf(f"/runs/{run_id}")
    response = await dashboard.client.post(f"/runs/{run_id}/retry", data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == f"/runs/{run_id}"
    page = await dashboard.page(f"/runs/{run_id}")
    assert f"Run {run_id} was failed; it is queued again." in page and "Retry this run" not in page
    assert dashboard.runs.get_run(run_id).status == "queued"
    await dashboard.client.post(f"/runs/{run_id}/retry", data={"csrf": csrf})
    assert f"Run {run_id} is already queued." in await dashboard.page(f"/runs/{run_id}")
    dashboard.runs.claim_next_run()
    dashboard.runs.finish_run(run_id, "succeeded")
    await dashboard.client.post(f"/runs/{run_id}/retry", data={"csrf": csrf})
    assert f"Run {run_id} cannot be retried: it succeeded" in await dashboard.page(f"/runs/{run_id}")


async def test_the_stylesheet_is_served_locally_and_pages_load_nothing_from_elsewhere(dashboard: Dashboard) -> None:
    css = await dashboard.client.get("/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert (await dashboard.client.get("/static/../app.py")).status_code == 404
    await dashboard.login()
    for path in ("/", "/workflows", "/runs"):
        page = await dashboard.page(path)
        assert not re.search(r'(src|href)="(https?:)?//', page), path


# --- the connect flow, against a real sandbox process ---------------------------------------------------------

@pytest.fixture(scope="module")
def consent_sandbox() -> Iterator[str]:
    with running_sandbox("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--no-rate-limit") as (base, _):
        yield base


async def start_connect(dashboard: Dashboard, sandbox: str, name: str = "acme") -> str:
    """Connect QuickBooks on the overview; the consent page's URL."""
    csrf = await dashboard.csrf("/")
    response = await dashboard.client.post("/connect", data={"csrf": csrf, "name": name, "environment": "local",
                                                             "sandbox_url": sandbox})
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"{sandbox}/connect/oauth2?")
    query = dict(parse_qsl(urlsplit(location).query))
    assert query["redirect_uri"] == f"{BASE}/oauth/callback" and len(query["state"]) >= 32
    return location


async def consent(url: str, action: str) -> str:
    """Answer the sandbox's consent page; the redirect back to qbflow."""
    async with httpx.AsyncClient(timeout=30) as browser:
        page = await browser.get(url)
        ticket = re.search(r'name="consent_ticket" value="([^"]+)"', page.text).group(1)
        realm = re.search(r'name="realm_id" value="([^"]+)"', page.text).group(1)
        answer = await browser.post(url.split("?")[0], data={"consent_ticket": ticket, "realm_id": realm,
                                                             "action": action})
    assert answer.status_code == 302
    return answer.headers["location"]


async def test_connect_in_the_browser_then_disconnect(dashboard: Dashboard, consent_sandbox: str) -> None:
    await dashboard.login()
    back = await consent(await start_connect(dashboard, consent_sandbox), "approve")
    assert back.startswith(f"{BASE}/oauth/callback?")
    response = await dashboard.client.get(back)
    assert response.status_code == 303 and response.headers["location"] == "/"
    page = await dashboard.page("/")
    assert "Connected Sandbox Company_US_1 as &#39;acme&#39;." in page
    record = dashboard.store.connections.get("acme")
    assert record.status == "ok" and record.environment == "local" and record.client_secret == CLIENT_SECRET
    assert record.access_token not in page and record.refresh_token not in page
    code = dict(parse_qsl(urlsplit(back).query))["code"]
    # The same answer again: the flow is over, nothing happens.
    again = await dashboard.client.get(back)
    assert again.status_code == 400 and "No connection was being made from this browser" in again.text
    assert code not in again.text

    csrf = await dashboard.csrf("/")
    response = await dashboard.client.post("/connections/disconnect", data={"csrf": csrf, "name": "acme"})
    assert response.status_code == 303
    assert "Disconnected &#39;acme&#39; (its access was revoked at Intuit)." in await dashboard.page("/")
    assert dashboard.store.connections.list() == []
    # Revoked at the sandbox: the refresh token is dead.
    async with httpx.AsyncClient() as http:
        refused = await http.post(f"{consent_sandbox}/oauth2/v1/tokens/bearer", auth=(CLIENT_ID, CLIENT_SECRET),
                                  data={"grant_type": "refresh_token", "refresh_token": record.refresh_token})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


async def test_denied_consent_and_a_forged_state_store_nothing(dashboard: Dashboard, consent_sandbox: str) -> None:
    await dashboard.login()
    back = await consent(await start_connect(dashboard, consent_sandbox), "deny")
    page = await dashboard.client.get(back)
    assert page.status_code == 400
    assert "consent was denied" in page.text and "Nothing was stored." in page.text and 'href="/"' in page.text

    back = await consent(await start_connect(dashboard, consent_sandbox), "approve")
    forged = back.replace("state=", "state=forged")
    page = await dashboard.client.get(forged)
    assert page.status_code == 400 and "state does not match" in page.text
    assert dashboard.store.connections.list() == []


async def test_connect_errors_are_shown(dashboard: Dashboard, consent_sandbox: str) -> None:
    await dashboard.login()
    csrf = await dashboard.csrf("/")
    cases = [({"name": "-bad name"}, "A connection&#39;s name is letters"),
             ({"name": "acme", "environment": "local", "sandbox_url": "ftp://x"}, "the sandbox URL must look like"),
             ({"name": "acme", "environment": "mars"}, "choose where the company is")]
    for data, message in cases:
        response = await dashboard.client.post("/connect", data={"csrf": csrf, **data})
        assert response.status_code == 303
        assert message in await dashboard.page("/"), message
    os.environ.pop("QBFLOW_CLIENT_ID")  # restored by the fixture's monkeypatch
    response = await dashboard.client.post("/connect", data={"csrf": csrf, "name": "acme", "environment": "local",
                                                             "sandbox_url": consent_sandbox})
    assert "set QBFLOW_CLIENT_ID and QBFLOW_CLIENT_SECRET" in (await dashboard.page("/")).replace("Set", "set")


async def test_the_redirect_uri_is_the_configured_public_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             consent_sandbox: str) -> None:
    monkeypatch.setenv("QBFLOW_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("QBFLOW_CLIENT_SECRET", CLIENT_SECRET)
    settings = Settings(data_dir=tmp_path / "data", api_token=SecretStr(API_TOKEN))
    store = open_store(settings, url=f"sqlite:///{tmp_path / 'qbflow.sqlite3'}",
                       box=SecretBox([SecretBox.generate_key()]))
    token, _ = load_or_create_api_token(settings)
    app = create_app(ServerConfig(store=store, settings=settings, api_token=token,
                                  public_url="https://qbflow.example.com"))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            dashboard = Dashboard(client, store, RunStore(store.engine))
            await dashboard.login()
            csrf = await dashboard.csrf("/")
            response = await client.post("/connect", data={"csrf": csrf, "name": "acme", "environment": "local",
                                                           "sandbox_url": consent_sandbox})
            query = dict(parse_qsl(urlsplit(response.headers["location"]).query))
            assert query["redirect_uri"] == "https://qbflow.example.com/oauth/callback"
    finally:
        store.close()


async def test_pending_approvals_are_listed_and_decided_on_the_dashboard(dashboard: Dashboard) -> None:
    from qbflow.server.approvals import approval_store

    workflow_id = add_workflow(dashboard.runs)
    run_id = add_runs(dashboard.runs, workflow_id, 1)[0]
    approvals = approval_store(dashboard.store)
    record = approvals.request(run_id, workflow_id, "ok", message="Pay bill 1042 (7,500.00)?", approvers=["ana"],
                               expires_at=datetime.now(UTC) + timedelta(days=3))
    assert (await dashboard.client.get("/approvals")).status_code in (302, 303, 307)  # a login first
    await dashboard.login()
    page = await dashboard.page("/approvals")
    assert "Pay bill 1042 (7,500.00)?" in page and f'data-approval="{record.id}"' in page
    csrf = await dashboard.csrf("/approvals")
    done = await dashboard.client.post(f"/approvals/{record.id}/decide",
                                       data={"csrf": csrf, "decision": "approved", "comment": "ok by phone"})
    assert done.status_code == 303
    decided = approvals.get(record.id)
    assert (decided.status, decided.decided_by, decided.comment) == ("approved", "dashboard", "ok by phone")
    page = await dashboard.page("/approvals")
    assert "Nothing is waiting for an answer." in page and "ok by phone" in page


# --- a workflow's tree of steps and a run's nested steps -------------------------------------------------------

HOOK_SECRET = "hook-token-SECRET-ddddddddddd"
TREE_YAML = f"""\
name: Approve big invoices
description: Ask before paying big invoices.
trigger: {{key: new_invoice, connection: acme, poll_interval: 2m, filter: "{{{{ trigger.TotalAmt > 0 }}}}"}}
steps:
  - id: totals
    set: {{big: "{{{{ trigger.TotalAmt > 1000 }}}}"}}
  - id: size
    if: "{{{{ steps.totals.output.big }}}}"
    then:
      - id: tell_boss
        action: log
        input: {{message: "Big invoice {{{{ trigger.DocNumber }}}}"}}
    else:
      - id: small_note
        action: log
        input: {{message: small one}}
  - id: by_term
    switch: "{{{{ trigger.Term }}}}"
    cases:
      "Net 30":
        - id: remind_later
          wait: 25d
    default:
      - id: no_term
        action: log
        input: {{message: no term}}
  - id: each_line
    for_each: "{{{{ trigger.Line }}}}"
    as: line
    concurrency: 2
    steps:
      - id: note_line
        when: "{{{{ line.Amount > 0 }}}}"
        action: log
        input: {{message: "line {{{{ loop.number }}}}: {{{{ line.Amount }}}}"}}
  - id: ok
    approval:
      message: "Pay invoice {{{{ trigger.DocNumber }}}}?"
      approvers: [ana]
      timeout: 2d
    notify:
      - id: ask
        action: http.request
        input:
          url: https://chat.example.com/hooks/finance
          headers: {{Authorization: "Bearer {HOOK_SECRET}"}}
          json: {{text: "{{{{ approval.message }}}}"}}
on_error:
  - id: alert
    action: log
    input: {{message: "failed: {{{{ error.message }}}}"}}
"""


class Nesting(HTMLParser):
    """Each element marked `data-step` or `data-branch`, with the marks of the marked elements around it."""

    VOID = frozenset({"input", "br", "meta", "link", "img", "hr"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []
        self.found: dict[str, list[list[str]]] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        marks = dict(attrs)
        mark = marks.get("data-step") or (f"[{marks['data-branch']}]" if "data-branch" in marks else None)
        if mark is not None:
            self.found.setdefault(mark, []).append([m for _, m in self.stack if m is not None])
        self.stack.append((tag, mark))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def within(self, mark: str) -> list[str]:
        """The marks around the one element with `mark`, outermost first."""
        [outside] = self.found[mark]
        return outside


def store_tree_workflow(runs: RunStore) -> int:
    from qbflow.engine.stored import stored_definition
    from qbflow.engine.workflow import load_workflow_text

    return runs.upsert_workflow("Approve big invoices", "flows/approve.yaml",
                                stored_definition(load_workflow_text(TREE_YAML))).id


async def test_a_workflow_page_shows_its_trigger_and_its_steps_as_a_tree(dashboard: Dashboard) -> None:
    store_tree_workflow(dashboard.runs)
    await dashboard.login()
    listed = await dashboard.page("/workflows")
    assert 'href="/workflows/Approve%20big%20invoices"' in listed
    page = await dashboard.page("/workflows/Approve%20big%20invoices")
    assert HOOK_SECRET not in page and "&#34;Authorization&#34;: &#34;***&#34;" in page
    for text in ("Ask before paying big invoices.", "QuickBooks changes", "new_invoice", "acme", "2m",
                 "{{ trigger.TotalAmt &gt; 0 }}", "Pay invoice {{ trigger.DocNumber }}?", "ana", "2d",
                 "{{ line.Amount &gt; 0 }}", "25d", "http.request", "at the next cycle (first poll)"):
        assert text in page, text
    tree = Nesting(page)
    assert tree.within("tell_boss") == ["size", "[then]"]
    assert tree.within("small_note") == ["size", "[else]"]
    assert tree.within("remind_later") == ["by_term", '[case "Net 30"]']
    assert tree.within("no_term") == ["by_term", "[default]"]
    assert tree.within("note_line") == ["each_line", "[for each item as line (concurrency 2)]"]
    assert tree.within("ask") == ["ok", "[notify]"]
    assert tree.within("alert") == ["[on_error]"]
    assert tree.within("totals") == [] and tree.within("each_line") == []
    missing = await dashboard.client.get("/workflows/Nope")
    assert missing.status_code == 404 and "No workflow named &#39;Nope&#39;" in missing.text


async def test_schedule_and_manual_workflow_pages_show_their_trigger(dashboard: Dashboard) -> None:
    from qbflow.engine.stored import stored_definition
    from qbflow.engine.workflow import load_workflow_text

    for text in ("name: Monday report\ntrigger: {kind: schedule, cron: '0 8 * * MON', timezone: Europe/Paris}\n"
                 "steps: [{id: say, action: log, input: {message: hi}}]\n",
                 "name: Refund\ntrigger: {kind: manual}\ninputs:\n  amount: {type: number, required: true, "
                 "description: How much}\n  note: {default: by hand}\nsteps: [{id: say, action: log, "
                 "input: {message: hi}}]\n"):
        workflow = load_workflow_text(text)
        dashboard.runs.upsert_workflow(workflow.name, None, stored_definition(workflow))
    await dashboard.login()
    schedule = await dashboard.page("/workflows/Monday%20report")
    assert "0 8 * * MON" in schedule and "Europe/Paris" in schedule
    fire = re.search(r"Next fire time</th><td>(\d{4}-\d\d-\d\d) 0[67]:00:00 UTC \(\1 08:00 CE", schedule)
    assert fire and datetime.fromisoformat(fire.group(1)).weekday() == 0, schedule
    manual = await dashboard.page("/workflows/Refund")
    assert 'href="/workflows/run?name=Refund"' in manual and "How much" in manual
    assert "<td><code>amount</code></td><td>number</td><td>yes</td>" in manual
    assert "<code>\"by hand\"</code>" in manual


async def test_a_run_page_nests_steps_by_their_paths_and_says_what_it_waits_for(dashboard: Dashboard) -> None:
    from qbflow.engine.runner import Runner
    from qbflow.server.approvals import approval_store

    workflow_id = store_tree_workflow(dashboard.runs)
    record = {"Id": "7", "DocNumber": "1042", "TotalAmt": 1500, "Term": "Net 15",
              "Line": [{"Amount": 10}, {"Amount": 20}, {"Amount": 0}]}
    events = [{"dedup_key": f"Invoice:{i}:0", "entity": "Invoice", "record_id": str(i), "sync_token": "0",
               "record": {**record, "Id": str(i)} if i == 7 else {**record, "Id": str(i), "Line": "not a list"}}
              for i in (7, 8)]
    waiting_id, failing_id = dashboard.runs.record_poll(workflow_id, "new_invoice", "acme", "9130350000000001",
                                                        events, "{}")
    sent: list[httpx.Request] = []
    runner = Runner(dashboard.runs, clients=None,  # type: ignore[arg-type] - no QuickBooks step runs
                    http_transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200, json={})),
                    approvals=approval_store(dashboard.store), public_url=BASE)
    for run_id in (waiting_id, failing_id):
        assert dashboard.runs.claim_run(run_id) is not None
        await runner.run_once(run_id)
    assert len(sent) == 1 and dashboard.runs.get_run(waiting_id).status == "waiting"
    assert dashboard.runs.get_run(failing_id).status == "failed"
    await dashboard.login()

    page = await dashboard.page(f"/runs/{waiting_id}")
    assert HOOK_SECRET not in page
    tree = Nesting(page)
    for index in range(3):
        assert tree.within(f"each_line[{index}].note_line") == ["each_line", f"[iteration {index}]"]
    assert tree.within("size.tell_boss") == ["size", "[then]"]
    assert tree.within("by_term.no_term") == ["by_term", "[default]"]
    assert tree.within("ok.ask") == ["ok", "[notify]"]
    assert re.findall(r'<section class="step card" data-step="([^"]+)"', page) == [
        "totals", "size", "size.tell_boss", "by_term", "by_term.no_term", "each_line", "each_line[0].note_line",
        "each_line[1].note_line", "each_line[2].note_line", "ok", "ok.ask"]
    skipped = page[page.index('data-step="each_line[2].note_line"'):]
    assert re.match(r'[^§]*?<code class="kind">log</code>\s*<span class="status skipped">', skipped)
    waiting = page[page.index('class="waiting-for"'):page.index("</tr>", page.index('class="waiting-for"'))]
    assert "Pay invoice 1042?" in waiting and 'href="/approvals"' in waiting and "ana" in waiting

    failed = await dashboard.page(f"/runs/{failing_id}")
    assert Nesting(failed).within("on_error.alert") == ["[on_error]"]
    assert "for_each needs a list" in failed and "waiting-for" not in failed


async def test_a_run_waiting_on_a_wait_step_says_until_when(dashboard: Dashboard) -> None:
    from qbflow.engine.runner import Runner
    from qbflow.engine.stored import stored_definition
    from qbflow.engine.workflow import load_workflow_text

    workflow = load_workflow_text("name: Later\ntrigger: {key: new_customer, connection: acme}\nsteps:\n"
                                  "  - {id: pause, wait: 3d}\n  - {id: say, action: log, input: {message: hi}}\n")
    workflow_id = dashboard.runs.upsert_workflow(workflow.name, None, stored_definition(workflow)).id
    [run_id] = add_runs(dashboard.runs, workflow_id, 1)
    moment = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
    assert dashboard.runs.claim_run(run_id, moment) is not None
    await Runner(dashboard.runs, clients=None, now=lambda: moment).run_once(run_id)  # type: ignore[arg-type]
    await dashboard.login()
    page = await dashboard.page(f"/runs/{run_id}")
    waiting = page[page.index('class="waiting-for"'):page.index("</tr>", page.index('class="waiting-for"'))]
    assert "step <code>pause</code> to wait until 2030-03-07 09:00:00 UTC" in waiting
    assert 'href="/approvals"' not in waiting
