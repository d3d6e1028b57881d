"""Schedules (`trigger: {kind: schedule}`): fire times of cron expressions in a time zone (DST included) and of
intervals; the engine, its clock advanced (never slept), stores each fire time once as an event and runs it; fire
times missed while qbflow was stopped follow `catch_up` (latest, all, none); two collectors of the same fire time
make one run. On SQLite and PostgreSQL (`runs`)."""

from __future__ import annotations

import asyncio
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qbflow.engine.cron import Timetable, check_timezone
from qbflow.engine.runner import Runner
from qbflow.engine.schedule import MAX_CATCH_UP, ScheduleSource, collect_schedules
from qbflow.engine.scheduler import Engine
from qbflow.engine.sources import source_for
from qbflow.engine.stored import store_workflow
from qbflow.engine.workflow import load_workflow_text, validate_workflow_text
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore
from qbflow.store.models import RUN_SUCCEEDED
from tests.engine.test_runner import FAST
from tests.engine.test_scheduler import Clients
from tests.support.engine import Clock

NEW_YORK = check_timezone("America/New_York")

MONDAY_REMINDER = textwrap.dedent("""\
    name: Monday reminder
    connection: acme
    trigger:
      kind: schedule
      cron: "0 8 * * MON"
      timezone: America/New_York
      catch_up: CATCH_UP
    steps:
      - id: invoices
        action: find_invoices
        input: {max_results: 10}
      - id: note
        action: log
        input:
          message: "Reminder of {{ trigger.scheduled_for }}: {{ steps.invoices.output.records | length }} invoice(s)"
    """)


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK).astimezone(UTC)  # type: ignore[misc]


def local_times(table: Timetable, start: datetime, n: int) -> list[str]:
    out, moment = [], start
    for _ in range(n):
        moment = table.next_after(moment)
        out.append(table.local(moment).isoformat())
    return out


# --- fire times ---------------------------------------------------------------------------------------------

def test_a_cron_expression_fires_at_its_local_time_in_summer_and_winter() -> None:
    table = Timetable(cron="0 8 * * MON", zone=NEW_YORK)
    # 2026-03-08: clocks go forward in New York; 08:00 stays 08:00 local (13:00Z before, 12:00Z after).
    fires = [table.next_after(ny(2026, 3, 1, 0, 0))]
    fires.append(table.next_after(fires[-1]))
    assert fires == [datetime(2026, 3, 2, 13, 0, tzinfo=UTC), datetime(2026, 3, 9, 12, 0, tzinfo=UTC)]


def test_dst_a_skipped_local_time_fires_once_when_the_gap_ends_and_a_repeated_one_fires_once() -> None:
    daily_230 = Timetable(cron="30 2 * * *", zone=NEW_YORK)
    assert local_times(daily_230, ny(2026, 3, 7, 0, 0), 3) == [
        "2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
    daily_130 = Timetable(cron="30 1 * * *", zone=NEW_YORK)  # 01:00-02:00 happens twice on 2026-11-01
    assert local_times(daily_130, ny(2026, 10, 31, 12, 0), 3) == [
        "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"]
    # Every 30 minutes through the gap: 02:00 and 02:30 do not exist; they fire once, at 03:00.
    half_hourly = Timetable(cron="*/30 * * * *", zone=NEW_YORK)
    assert local_times(half_hourly, ny(2026, 3, 8, 1, 0), 3) == [
        "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]
    assert [half_hourly.local(f).isoformat() for f in half_hourly.between(
        ny(2026, 3, 8, 1, 0), ny(2026, 3, 8, 3, 45), limit=10)] == [
        "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]


def test_an_interval_fires_on_its_multiples_since_the_epoch() -> None:
    table = Timetable(every=timedelta(minutes=15))
    start = datetime(2026, 5, 4, 10, 7, 13, tzinfo=UTC)
    assert table.next_after(start) == datetime(2026, 5, 4, 10, 15, tzinfo=UTC)
    assert table.between(start, datetime(2026, 5, 4, 11, 0, tzinfo=UTC), limit=2) == [
        datetime(2026, 5, 4, 10, 45, tzinfo=UTC), datetime(2026, 5, 4, 11, 0, tzinfo=UTC)]


def test_schedule_problems_name_the_field_and_the_value() -> None:
    text = MONDAY_REMINDER.replace("CATCH_UP", "latest")

    def problems(old: str, new: str) -> list[tuple[int | None, str, str]]:
        return [(p.line, p.field, p.message) for p in validate_workflow_text(text.replace(old, new), source="m.yaml")]

    assert problems('"0 8 * * MON"', '"0 8 * * MOX"') == [
        (5, "trigger.cron", "invalid cron expression '0 8 * * MOX': [0 8 * * mox] is not acceptable; expected 5 "
                            "fields (minute hour day-of-month month day-of-week), e.g. '0 8 * * MON'")]
    assert problems("America/New_York", "America/New_Yrok") == [
        (6, "trigger.timezone", "unknown time zone 'America/New_Yrok'; did you mean 'America/New_York'?")]
    assert problems('cron: "0 8 * * MON"', "every: 20s") == [
        (5, "trigger.every", "must be whole minutes, at least 1m, got '20s'")]
    assert problems('cron: "0 8 * * MON"', 'cron: "0 8 * * MON"\n  every: 1h')[0][1:] == (
        "trigger", "a schedule needs exactly one of `cron` (e.g. '0 8 * * MON') or `every` (e.g. '15m'), not both")
    assert problems("catch_up: latest", "catch_up: first") == [
        (7, "trigger.catch_up", "expected 'latest', 'all' or 'none'")]
    assert problems("catch_up: latest", "catchup: latest")[0][1:] == (
        "trigger.catchup", "unknown key 'catchup'; did you mean 'catch_up'?")


def test_a_dry_run_sees_the_next_fire_time() -> None:
    workflow = load_workflow_text(MONDAY_REMINDER.replace("CATCH_UP", "latest"))
    sample = source_for("schedule").sample(workflow)
    fire = datetime.fromisoformat(sample["fire_time"])
    assert fire > datetime.now(UTC) and sample["timezone"] == "America/New_York"
    assert datetime.fromisoformat(sample["scheduled_for"]).strftime("%a %H:%M") == "Mon 08:00"


# --- the engine -------------------------------------------------------------------------------------------------

def reminder(runs: RunStore, catch_up: str = "latest") -> int:
    record, _ = store_workflow(runs, load_workflow_text(MONDAY_REMINDER.replace("CATCH_UP", catch_up)), None)
    return record.id


def engine(runs: RunStore, sandbox: Sandbox, realm: str, token: str, clock: Clock) -> Engine:
    clients = Clients(sandbox, realm, token)
    return Engine(runs, clients, Runner(runs, clients, retry=FAST, now=clock), clock=clock)


def fire_times(runs: RunStore) -> list[str]:
    return sorted(run.event.record["scheduled_for"] for run in (runs.get_run(r.id) for r in runs.list_runs())
                  if run.event is not None)


async def test_the_monday_reminder_runs_once_per_fire_time(runs: RunStore, sandbox: Sandbox, realm: str,
                                                            token: str) -> None:
    reminder(runs)
    clock = Clock(ny(2026, 3, 1, 12, 0))  # a Sunday: the schedule starts from now
    qbflow = engine(runs, sandbox, realm, token, clock)
    assert (await qbflow.cycle()).runs == 0
    clock.set(ny(2026, 3, 2, 7, 59, 59))
    assert (await qbflow.cycle()).runs == 0
    clock.set(ny(2026, 3, 2, 8, 0, 1))
    report = await qbflow.cycle()
    assert report.events == 1 and report.runs == 1 and report.errors == []
    run = runs.get_run(runs.list_runs()[0].id)
    assert run.status == RUN_SUCCEEDED
    assert run.event is not None and run.event.record == {
        "fire_time": "2026-03-02T13:00:00Z", "scheduled_for": "2026-03-02T08:00:00-05:00",
        "timezone": "America/New_York"}
    assert "Reminder of 2026-03-02T08:00:00-05:00: " in str(run.step("note").output)
    for moment in (ny(2026, 3, 2, 8, 0, 30), ny(2026, 3, 2, 17, 0), ny(2026, 3, 9, 7, 59)):
        clock.set(moment)
        assert (await qbflow.cycle()).runs == 0  # the same fire time sends nothing twice
    clock.set(ny(2026, 3, 9, 8, 0, 2))  # the next Monday (after the DST change: 12:00Z)
    assert (await qbflow.cycle()).runs == 1
    assert fire_times(runs) == ["2026-03-02T08:00:00-05:00", "2026-03-09T08:00:00-04:00"]
    assert {r.status for r in runs.list_runs()} == {RUN_SUCCEEDED}


@pytest.mark.parametrize(("catch_up", "expected"), [
    ("latest", ["2026-03-23T08:00:00-04:00"]),
    ("all", ["2026-03-09T08:00:00-04:00", "2026-03-16T08:00:00-04:00", "2026-03-23T08:00:00-04:00"]),
    ("none", []),
])
async def test_fire_times_missed_while_stopped_follow_catch_up(runs: RunStore, sandbox: Sandbox, realm: str,
                                                               token: str, catch_up: str, expected: list[str]) -> None:
    reminder(runs, catch_up)
    clock = Clock(ny(2026, 3, 3, 12, 0))  # a Tuesday
    await engine(runs, sandbox, realm, token, clock).cycle()
    # Stopped for three Mondays; started again on Wednesday.
    clock.set(ny(2026, 3, 25, 9, 30))
    restarted = engine(runs, sandbox, realm, token, clock)
    report = await restarted.cycle()
    assert report.runs == len(expected) and report.errors == []
    assert fire_times(runs) == expected
    assert (await restarted.cycle()).runs == 0
    clock.set(ny(2026, 3, 30, 8, 0, 5))  # the next Monday fires as usual, whatever the policy
    assert (await restarted.cycle()).runs == 1
    assert fire_times(runs) == [*expected, "2026-03-30T08:00:00-04:00"]


async def test_catch_up_none_still_runs_a_fire_time_seen_on_time(runs: RunStore, sandbox: Sandbox, realm: str,
                                                                 token: str) -> None:
    reminder(runs, "none")
    clock = Clock(ny(2026, 3, 1, 12, 0))
    qbflow = engine(runs, sandbox, realm, token, clock)
    await qbflow.cycle()
    clock.set(ny(2026, 3, 2, 8, 0, 40))  # a slow tick: 40 s late is on time
    assert (await qbflow.cycle()).runs == 1


def test_catch_up_all_is_bounded(runs: RunStore) -> None:
    definition = MONDAY_REMINDER.replace("CATCH_UP", "all").replace('cron: "0 8 * * MON"', "every: 1m")
    record, _ = store_workflow(runs, load_workflow_text(definition), None)
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert collect_schedules(runs, start) == []
    created = collect_schedules(runs, start + timedelta(hours=5))  # 300 fire times missed
    assert len(created) == MAX_CATCH_UP
    fires = sorted(runs.get_run(run_id).event.record["fire_time"] for run_id in created)  # type: ignore[union-attr]
    assert fires[0] == "2026-03-01T15:21:00Z" and fires[-1] == "2026-03-01T17:00:00Z"
    assert record.id


def test_two_collectors_of_one_fire_time_make_one_run(runs: RunStore) -> None:
    reminder(runs)
    first, second = ScheduleSource(), ScheduleSource()  # two engines (or workers): neither knows the other
    start, fire = ny(2026, 3, 1, 12, 0), ny(2026, 3, 2, 8, 0)
    assert first.collect_now(runs, first.workflows(runs), start) == []
    made = first.collect_now(runs, first.workflows(runs), fire + timedelta(seconds=3))
    # The second one's clock is a second behind: it sees the same fire time due and stores nothing new, and does
    # not move the schedule back (the next collector does not fire it again either).
    assert second.collect_now(runs, second.workflows(runs), fire + timedelta(seconds=2)) == []
    assert ScheduleSource().collect_now(runs, first.workflows(runs), fire + timedelta(seconds=4)) == []
    assert len(made) == 1 and len(runs.list_runs()) == 1


async def test_an_interval_schedule_without_quickbooks(runs: RunStore, sandbox: Sandbox, realm: str,
                                                       token: str) -> None:
    text = textwrap.dedent("""\
        name: Heartbeat
        trigger: {kind: schedule, every: 15m}
        steps:
          - {id: beat, action: log, input: {message: "beat at {{ trigger.fire_time }}"}}
        """)
    store_workflow(runs, load_workflow_text(text), None)
    clock = Clock(datetime(2026, 5, 4, 10, 7, tzinfo=UTC))
    qbflow = engine(runs, sandbox, realm, token, clock)
    await qbflow.cycle()
    clock.set(datetime(2026, 5, 4, 10, 15, 1, tzinfo=UTC))
    assert (await qbflow.cycle()).runs == 1
    clock.set(datetime(2026, 5, 4, 11, 20, tzinfo=UTC))  # four fire times: the latest runs
    assert (await qbflow.cycle()).runs == 1
    runs_made: list[Any] = [runs.get_run(r.id) for r in runs.list_runs()]
    assert sorted(r.event.record["fire_time"] for r in runs_made) == ["2026-05-04T10:15:00Z", "2026-05-04T11:15:00Z"]
    assert all(r.status == RUN_SUCCEEDED and r.event.realm_id == "" for r in runs_made)


async def test_a_disabled_schedule_does_not_fire(runs: RunStore, sandbox: Sandbox, realm: str, token: str) -> None:
    reminder(runs)
    clock = Clock(ny(2026, 3, 1, 12, 0))
    qbflow = engine(runs, sandbox, realm, token, clock)
    await qbflow.cycle()
    runs.set_enabled("Monday reminder", False)
    clock.set(ny(2026, 3, 2, 8, 0, 1))
    assert (await qbflow.cycle()).runs == 0


def test_two_collectors_racing_on_one_fire_time_store_it_once(runs: RunStore) -> None:
    reminder(runs)
    start, fire = ny(2026, 3, 1, 12, 0), ny(2026, 3, 2, 8, 0)
    collect_schedules(runs, start)
    barrier = threading.Barrier(4)

    def collector(late: int) -> list[int]:
        source = ScheduleSource()
        workflows = source.workflows(runs)
        barrier.wait()
        return source.collect_now(runs, workflows, fire + timedelta(seconds=late))

    with ThreadPoolExecutor(4) as pool:
        made = [run_id for ids in pool.map(collector, range(1, 5)) for run_id in ids]
    assert len(made) == 1 and [r.id for r in runs.list_runs()] == made


async def test_the_running_engine_fires_a_schedule_on_its_tick(runs: RunStore, sandbox: Sandbox, realm: str,
                                                               token: str) -> None:
    reminder(runs)
    clock = Clock(ny(2026, 3, 1, 12, 0))
    qbflow = engine(runs, sandbox, realm, token, clock)
    stop, ran = asyncio.Event(), asyncio.Event()
    ticks = 0

    def on_cycle(report: Any) -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 2:
            clock.set(ny(2026, 3, 2, 8, 0, 1))  # the schedule started at the first tick; Monday comes
        if report.runs:
            ran.set()

    task = asyncio.create_task(qbflow.run_forever(tick=0.01, on_cycle=on_cycle, stop=stop))
    try:
        await asyncio.wait_for(ran.wait(), timeout=60)
    finally:
        stop.set()
        await task
    assert fire_times(runs) == ["2026-03-02T08:00:00-05:00"]
