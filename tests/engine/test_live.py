"""What a person sees of `qbflow run`: the live view (triggers, recent runs, counters, problems) and the
plain lines, rendered as a terminal would show them, with the engine against the in-process sandbox."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from rich.cells import cell_len
from rich.console import Console

from qbflow.app.run import run_engine
from qbflow.connector.polling import PollCursor, TriggerEvent
from qbflow.engine.live import EngineStats, build_view
from qbflow.engine.scheduler import CycleReport
from qbflow.engine.workflow import load_workflow_text
from qbflow.qbo import StaticTokens
from qbflow.sandbox.app import Sandbox
from qbflow.store import ConnectionNotFound, RunStore, SecretBox, Store, open_store
from tests.support.clients import make_client
from tests.support.engine import NO_CLIENT_RETRY

NOW = datetime(2026, 3, 4, 10, 0, 0, tzinfo=UTC)
WORKFLOW = """
name: welcome-customers
trigger:
  key: new_customer
  connection: acme
  poll_interval: 5m
steps:
  - id: note
    action: log
    input:
      message: "Welcome {{ trigger.DisplayName }}"
"""


@pytest.fixture(autouse=True)
def _no_real_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("QBFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("QBFLOW_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(url=f"sqlite:///{tmp_path / 'runs.sqlite3'}", box=SecretBox([SecretBox.generate_key()]))
    yield opened
    opened.close()


@pytest.fixture
def runs(store: Store) -> RunStore:
    return RunStore(store.engine)


@pytest.fixture
def clients(sandbox: Sandbox, realm: str, token: str):
    """A fresh sandbox client per call; `factory.calls` counts them, `factory.then` runs after each call."""

    async def factory(name: str):
        factory.calls += 1
        if factory.then is not None:
            factory.then()
        return make_client(sandbox, realm, StaticTokens(token), retry=NO_CLIENT_RETRY)

    factory.calls = 0
    factory.then = None
    return factory


def add_workflow(runs: RunStore, text: str = WORKFLOW):
    load_workflow_text(text)
    definition = yaml.safe_load(text)
    return runs.upsert_workflow(definition["name"], None, definition)


def queue_runs(runs: RunStore, workflow_id: int, names: list[str], realm: str = "realm-1") -> list[int]:
    """Store one event (and so one queued run) per customer name, as a poll would."""
    events = [TriggerEvent(trigger_key="new_customer", entity="Customer", record_id=str(i), sync_token="0",
                           record={"Id": str(i), "DisplayName": name}, dedup_key=f"new_customer:Customer:{i}:0",
                           changed_at=NOW)
              for i, name in enumerate(names, start=1)]
    return runs.record_poll(workflow_id, "new_customer", "acme", realm, events, PollCursor.start(NOW).to_json(),
                            now=NOW, next_poll_at=NOW + timedelta(minutes=5))


async def activate(store: Store, clients) -> None:
    """A first cycle, as `qbflow run --once` after `workflow add`: the trigger fires from now on.

    (It may fire for the sandbox's seeded records of this very second: activation is to the second.)"""
    await run_engine(store, once=True, console=Console(file=io.StringIO()), clients=clients)


def render(renderable) -> str:
    console = Console(record=True, width=160, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def section(text: str, title: str, until: str | None = None) -> str:
    start = text.index(title)
    end = text.index(until, start) if until else len(text)
    return text[start:end]


def row_ids(table_text: str) -> list[int]:
    ids = []
    for line in table_text.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if cells and cells[0].isdigit():
            ids.append(int(cells[0]))
    return ids


# --- the view -----------------------------------------------------------------------------------------------

def test_recent_runs_newest_first_with_a_failed_runs_error(runs: RunStore):
    workflow = add_workflow(runs)
    first, second, third = queue_runs(runs, workflow.id, ["Cool Cars", "Mark Cho", "Red Rock Diner"])
    claimed = runs.claim_next_run(NOW)
    assert claimed.id == first
    runs.finish_run(first, "failed", "create_invoice: Customer 'Cool Cars' is inactive (QBO 6000)",
                    now=NOW + timedelta(seconds=2))
    assert runs.claim_next_run(NOW + timedelta(seconds=3)).id == second
    runs.finish_run(second, "succeeded", now=NOW + timedelta(seconds=4, milliseconds=500))

    text = render(build_view(runs, EngineStats(started_at=NOW), now=NOW + timedelta(seconds=10)))

    recent = section(text, "Recent runs", "since start")
    assert row_ids(recent) == [third, second, first]
    failed_row = next(line for line in recent.splitlines() if f" {first} " in line[:8])
    assert "failed" in failed_row
    assert "Customer 'Cool Cars' is inactive (QBO 6000)" in failed_row
    succeeded_row = next(line for line in recent.splitlines() if f" {second} " in line[:8])
    assert "succeeded" in succeeded_row and "1.5 s" in succeeded_row
    assert "queued" in next(line for line in recent.splitlines() if f" {third} " in line[:8])


def test_a_triggers_last_error_shows_in_its_row(runs: RunStore):
    workflow = add_workflow(runs)
    add_workflow(runs, WORKFLOW.replace("welcome-customers", "idle-flow"))
    queue_runs(runs, workflow.id, ["Cool Cars"])
    runs.record_poll_error(workflow.id, "new_customer", "realm-1", "QuickBooks is unavailable (503), try later",
                           now=NOW + timedelta(minutes=5), next_poll_at=NOW + timedelta(minutes=10))

    text = render(build_view(runs, EngineStats(started_at=NOW), now=NOW + timedelta(minutes=6),
                             database="sqlite:///books.sqlite3"))

    assert "sqlite:///books.sqlite3" in text and "Ctrl-C" in text
    triggers = section(text, "Triggers", "Recent runs")
    polled = next(line for line in triggers.splitlines() if "welcome-customers" in line)
    assert "new_customer" in polled and "acme" in polled
    assert "10:05:00 (60 s ago)" in polled
    assert "10:10:00 (in 4 min)" in polled
    assert "QuickBooks is unavailable (503), try later" in polled
    never = next(line for line in triggers.splitlines() if "idle-flow" in line)
    assert "never" in never and "due" in never and "unavailable" not in never


def test_a_problem_repeated_every_cycle_is_one_line_with_a_count(runs: RunStore):
    add_workflow(runs)
    stats = EngineStats(started_at=NOW)
    missing = "welcome-customers: No connection named 'acme'. See `qbflow connections list`."
    for second in range(3):
        stats.add_cycle(CycleReport(errors=[missing]), now=NOW + timedelta(seconds=second))
    stats.add_cycle(CycleReport(polls=1, events=2, runs=2, errors=["other-flow: token expired"]),
                    now=NOW + timedelta(seconds=3))

    text = render(build_view(runs, stats, now=NOW + timedelta(seconds=4)))

    problems = section(text, "Problems")
    assert text.count("No connection named 'acme'") == 1
    repeated = next(line for line in problems.splitlines() if "No connection named 'acme'" in line)
    assert "×3" in repeated
    assert "×1" in next(line for line in problems.splitlines() if "token expired" in line)
    counters = section(text, "since start", "Problems")
    assert "cycles 4" in counters and "polls 1" in counters and "new events 2" in counters
    assert "problems 4" in counters


def test_a_report_with_extra_fields_or_fewer_fields_is_counted(runs: RunStore):
    class Fewer:
        polls = 2
        runs = 1

    class More:  # what a newer engine hands over
        polls = 1
        events = 3
        runs = 0
        errors = ()
        requests = 4
        paused = ["acme"]
        skipped = 7

    stats = EngineStats(started_at=NOW)
    stats.add_cycle(Fewer(), now=NOW)
    stats.add_cycle(More(), now=NOW)
    assert (stats.polls, stats.events, stats.runs, stats.problem_count) == (3, 3, 1, 0)

    text = render(build_view(runs, stats, now=NOW))
    assert "paused (needs reconnecting): acme" in text
    assert "QBO requests 4" in text
    assert "no workflows" in text and "no runs yet" in text


# --- the view in a narrow or wide terminal --------------------------------------------------------------------

LONG_NAME = "invoice-every-new-customer-of-the-garden-shop"


def busy_view(runs: RunStore):
    """A view with something in every column: a long workflow name, a trigger's error, a failed run with a long
    error, a run waiting for its third attempt, and a problem."""
    workflow = add_workflow(runs, WORKFLOW.replace("welcome-customers", LONG_NAME))
    add_workflow(runs)
    failed, retrying, _queued = queue_runs(runs, workflow.id, ["Cool Cars", "Mark Cho", "Red Rock Diner"])
    runs.record_poll_error(workflow.id, "new_customer", "realm-1", "QuickBooks is unavailable (503), try later",
                           now=NOW + timedelta(minutes=5), next_poll_at=NOW + timedelta(minutes=10))
    runs.claim_next_run(NOW)
    runs.finish_run(failed, "failed", "create_invoice: Customer 'Cool Cars' is inactive; make it active in QuickBooks "
                    "or pick another customer (QBO 6000)", now=NOW + timedelta(seconds=2))
    for attempt in range(2):
        assert runs.claim_run(retrying, NOW + timedelta(minutes=attempt + 1)) is not None
        runs.finish_run(retrying, "waiting_retry", "QuickBooks timed out", now=NOW + timedelta(minutes=attempt + 1),
                        next_attempt_at=NOW + timedelta(minutes=attempt + 1, seconds=30))
    stats = EngineStats(started_at=NOW)
    stats.add_problem("poll of acme failed: QuickBooks is unavailable (503), try later", NOW + timedelta(minutes=5))
    return build_view(runs, stats, now=NOW + timedelta(minutes=6),
                      database="sqlite:////home/someone/.local/share/qbflow/qbflow.sqlite3")


def render_at(renderable, width: int) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def headers(text: str, title: str) -> list[list[str]]:
    """The header lines of the table under `title`: the lines between its top border and the rule under the
    headers, each split into its cells."""
    lines = text[text.index(title):].splitlines()
    top = next(n for n, line in enumerate(lines) if line.startswith("┏"))
    rule = next(n for n, line in enumerate(lines) if line.startswith("┡"))
    return [[cell.strip() for cell in line.strip("┃ ").split("┃")] for line in lines[top + 1:rule]]


@pytest.mark.parametrize(("width", "triggers", "recent"), [
    (60, ["Workflow", "Last poll", "Next poll", "Last error"], ["ID", "Workflow", "Status", "Error"]),
    (80, ["Workflow", "Trigger", "Last poll", "Next poll", "Last error"],
     ["ID", "Workflow", "Status", "Started", "Duration", "Error"]),
    (120, ["Workflow", "Trigger", "Connection", "Last poll", "Next poll", "Last error"],
     ["ID", "Workflow", "Status", "Attempt", "Started", "Duration", "Error"]),
])
def test_the_view_fits_the_terminal_with_every_header_on_one_line(runs: RunStore, width: int, triggers: list[str],
                                                                  recent: list[str]):
    text = render_at(busy_view(runs), width)

    assert max(cell_len(line) for line in text.splitlines()) <= width
    assert headers(text, "Triggers") == [triggers]
    assert headers(text, "Recent runs") == [recent]
    assert headers(text, "Problems") == [["Times", "Last seen", "Problem"]]
    # What a left-out column said is still there, under the workflow or the status.
    flat = " ".join(text.split())
    assert "new_customer" in flat and ("acme" in flat)
    assert "waiting_retry" in text
    if "Attempt" not in recent:
        assert "attempt 2" in flat
    # Narrow terminals show times relative only; wide ones the time of day too.
    assert ("10:05:00 (60 s ago)" in text) is (width >= 100)
    assert "60 s ago" in text


def test_the_view_fits_every_width_from_50_to_200(runs: RunStore):
    view = busy_view(runs)
    for width in range(50, 201, 3):
        text = render_at(view, width)
        assert max(cell_len(line) for line in text.splitlines()) <= width, width
        for title in ("Triggers", "Recent runs", "Problems"):
            found = headers(text, title)
            assert len(found) == 1, (width, title, found)  # one line: no header broken over several
            assert all(len(cell) > 1 for cell in found[0]), (width, title, found)


# --- running --------------------------------------------------------------------------------------------------

async def test_once_runs_what_is_queued_and_prints_the_summary_line(store: Store, runs: RunStore, clients):
    workflow = add_workflow(runs)
    await activate(store, clients)
    (run_id,) = queue_runs(runs, workflow.id, ["Cool Cars"])
    out = Console(record=True, width=160, file=io.StringIO())

    await run_engine(store, once=True, console=out, clients=clients)

    assert "polls 1, new events 0, runs 1" in out.export_text()
    assert runs.get_run(run_id).status == "succeeded"


async def test_live_view_while_running_then_stopped(store: Store, runs: RunStore, clients, realm: str):
    workflow = add_workflow(runs)
    # The sample company's customers made this very second fire (and run) at activation, not in the view below,
    # where they would push the run queued during its poll out of the newest runs shown; then the poll is due.
    await activate(store, clients)
    cursor = runs.get_cursor(workflow.id, "new_customer", realm)
    assert cursor is not None
    runs.record_poll(workflow.id, "new_customer", "acme", realm, [], cursor.cursor, next_poll_at=datetime.now(UTC))
    out = Console(record=True, width=160, file=io.StringIO(), force_terminal=True, color_system=None)
    stop = asyncio.Event()
    ready: list[bool] = []
    qbflow_logger = logging.getLogger("qbflow")
    handlers, propagate = list(qbflow_logger.handlers), qbflow_logger.propagate
    queued: list[int] = []

    def during_the_poll() -> None:
        logging.getLogger("qbflow.test").warning("a warning while the view is drawn")
        queued.extend(queue_runs(runs, workflow.id, ["Cool Cars"]))
        stop.set()  # this poll finishes; the run queued now waits for the next start (a stop takes no new work)

    clients.then = during_the_poll
    await asyncio.wait_for(run_engine(store, console=out, stop=stop, on_ready=lambda: ready.append(True),
                                      clients=clients), timeout=60)

    text = out.export_text()
    (run_id,) = queued
    assert ready == [True]
    assert "a warning while the view is drawn" in text
    assert "welcome-customers" in text and "Recent runs" in text
    final = text[text.rindex("qbflow engine"):]
    assert "stopped" in final
    newest = next(line for line in section(final, "Recent runs", "since start").splitlines()
                  if f" {run_id} " in line[:8])
    assert "queued" in newest  # kept for the next start
    assert runs.get_run(run_id).status == "queued"
    counters = section(final, "since start")
    assert "polls 1 " in counters and "succeeded, 0 failed" in counters
    assert text.rstrip().endswith("stopped.")
    assert qbflow_logger.handlers == handlers and qbflow_logger.propagate == propagate


async def test_plain_lines_do_not_repeat_the_same_problem_every_cycle(store: Store, runs: RunStore):
    add_workflow(runs)
    out = Console(record=True, width=200, file=io.StringIO())
    stop = asyncio.Event()

    async def nowhere(name: str):
        nowhere.calls += 1
        if nowhere.calls == 3:
            stop.set()
        raise ConnectionNotFound(name)

    nowhere.calls = 0
    await asyncio.wait_for(run_engine(store, live=False, tick=0.1, console=out, stop=stop, clients=nowhere),
                           timeout=60)

    lines = out.export_text().splitlines()
    printed = [line for line in lines if line.startswith("polls")]
    assert len(printed) == 1, lines
    assert printed[0].startswith("polls 0, new events 0, runs 0, problems: ")
    assert "No connection named 'acme'" in printed[0]
    assert "(the problems above came back 2 more time(s))" in lines
    assert lines[-1] == "stopped."


async def test_ctrl_c_stops_the_engine_after_the_cycle_in_flight(store: Store, runs: RunStore, clients):
    add_workflow(runs)
    out = Console(record=True, width=160, file=io.StringIO())
    before = signal.getsignal(signal.SIGINT)
    clients.then = lambda: os.kill(os.getpid(), signal.SIGINT)

    await asyncio.wait_for(run_engine(store, live=False, console=out, clients=clients), timeout=60)

    text = out.export_text()
    assert "polls 1, new events" in text  # the cycle in flight finished and was reported
    assert text.rstrip().endswith("stopped.")
    assert clients.calls == 1
    assert signal.getsignal(signal.SIGINT) == before
