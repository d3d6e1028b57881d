"""What a person sees of a running engine: the live view and the one-line summaries of its cycles.

    stats = EngineStats()                                  # fed each cycle's report and each finished run
    console.print(build_view(runs, stats))                 # the view, as `qbflow run` (and `up`) redraw it
    on_cycle = CycleLines(console, stats)                  # `qbflow serve`, logs, CI: one line per busy cycle

The view (`build_view`): the engine's header (running since, database, how to stop it), one row per workflow
trigger and company (last poll, next poll, last error), the most recent runs (status, attempt, duration, error)
and what happened since start (polls, events, runs succeeded and failed, problems; the same problem repeated
every cycle is one line with a count). The tables fit the terminal's width as it is at each redraw: every header
stays on one line; on a narrow terminal the less important columns are left out (what they said goes under the
workflow or the status) and, below 100 columns, times are relative.

Elsewhere (logs, CI, pipes) a cycle that did something prints one line (`CycleLines`),
"polls P, new events E, runs R" + ", problems: ..."; a cycle whose only news is the problems of the last line
printed is not printed again (a note counts the repeats once something else happens).

Everything shown is read from the database (`RunStore`) and from the `CycleReport`s this process received,
so the view is right however many engines share the database. Drawing it in a process (rich `Live`, redrawn
after every cycle and every second, logs routed above it, signals) is `qbflow.app.run`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from qbflow.engine.workflow import trigger_kind
from qbflow.store.models import RUN_FAILED, RUN_RUNNING, RUN_SUCCEEDED, RUN_WAITING_RETRY
from qbflow.store.runs import CursorRecord, RunRecord, RunStore, WorkflowRecord

__all__ = ["STOP_HINT", "CycleLines", "EngineStats", "Problem", "build_view", "summary_line"]

RECENT_RUNS = 15
RECENT_PROBLEMS = 5
STOP_HINT = "Ctrl-C stops it (runs in flight get 20 s to finish; the rest resume at the next start)."
_MAX_PROBLEMS_KEPT = 200
_STATUS_STYLE = {RUN_SUCCEEDED: "green", RUN_FAILED: "red", RUN_RUNNING: "cyan", "queued": "blue",
                 RUN_WAITING_RETRY: "yellow", "cancelled": "dim"}


# --- what happened since start ----------------------------------------------------------------------------

@dataclass
class Problem:
    """One distinct problem message and how often cycles reported it."""

    message: str
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass
class EngineStats:
    """Counters since the engine started, fed by `CycleReport`s (`add_cycle`) and finished runs (`add_run`)."""

    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    cycles: int = 0
    polls: int = 0
    events: int = 0
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    retrying: int = 0
    requests: int | None = None  # QBO requests, when the reports count them
    paused: list[str] = field(default_factory=list)  # connections the last report had paused
    last_cycle_at: datetime | None = None
    problems: dict[str, Problem] = field(default_factory=dict)

    def add_cycle(self, report: Any, now: datetime | None = None) -> None:
        """Count one cycle's report (any object with polls/events/runs/errors; missing ones count as 0)."""
        now = now or datetime.now(UTC)
        polls, events, runs, errors = _counts(report)
        self.cycles += 1
        self.polls += polls
        self.events += events
        self.runs += runs
        requests = getattr(report, "requests", None)
        if isinstance(requests, int):
            self.requests = (self.requests or 0) + requests
        paused = getattr(report, "paused", None)
        self.paused = sorted({str(name) for name in paused}) if paused else []
        self.last_cycle_at = now
        for message in errors:
            self.add_problem(message, now)

    def add_problem(self, message: str, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        known = self.problems.pop(message, None)  # re-inserted last: the dict stays in order of last sighting
        if known is None:
            known = Problem(message=message, count=0, first_seen=now, last_seen=now)
        known.count += 1
        known.last_seen = now
        self.problems[message] = known
        while len(self.problems) > _MAX_PROBLEMS_KEPT:
            self.problems.pop(next(iter(self.problems)))

    def add_run(self, run: Any) -> None:
        """Count a run's outcome (a `RunRecord` as the runner returns it)."""
        status = getattr(run, "status", None)
        if status == RUN_SUCCEEDED:
            self.succeeded += 1
        elif status == RUN_FAILED:
            self.failed += 1
        elif status == RUN_WAITING_RETRY:
            self.retrying += 1

    @property
    def problem_count(self) -> int:
        return sum(problem.count for problem in self.problems.values())

    def recent_problems(self, limit: int = RECENT_PROBLEMS) -> list[Problem]:
        """The problems seen most recently, newest first."""
        return list(reversed(self.problems.values()))[:limit]


def _counts(report: Any) -> tuple[int, int, int, list[str]]:
    errors = getattr(report, "errors", None) or []
    return (int(getattr(report, "polls", 0) or 0), int(getattr(report, "events", 0) or 0),
            int(getattr(report, "runs", 0) or 0), [str(error) for error in errors])


def summary_line(report: Any) -> str | None:
    """A cycle on one line ("polls 1, new events 2, runs 2, problems: ..."), or None if nothing happened."""
    polls, events, runs, errors = _counts(report)
    if not (polls or runs or errors):
        return None
    return f"polls {polls}, new events {events}, runs {runs}" + (f", problems: {'; '.join(errors)}" if errors else "")


# --- the view ---------------------------------------------------------------------------------------------

def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _clock(moment: datetime | None, now: datetime) -> str:
    """"10:00:05" today, "2026-01-02 10:00" another day (UTC), "-" for none."""
    moment = _utc(moment)
    if moment is None:
        return "-"
    return f"{moment:%H:%M:%S}" if moment.date() == now.date() else f"{moment:%Y-%m-%d %H:%M}"


def _ago(moment: datetime | None, now: datetime) -> str:
    moment = _utc(moment)
    if moment is None:
        return "never"
    return f"{_clock(moment, now)} ({_span((now - moment).total_seconds())} ago)"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _short(text: object, width: int) -> str:
    if text is None or text == "":
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _trigger_of(workflow: WorkflowRecord) -> tuple[str, str]:
    trigger = workflow.definition.get("trigger") if isinstance(workflow.definition, dict) else None
    if not isinstance(trigger, dict):
        return "?", "?"
    if trigger_kind(trigger) != "qbo":
        return trigger_kind(trigger), str(workflow.definition.get("connection") or "-")
    return str(trigger.get("key") or "?"), str(trigger.get("connection") or "?")


def _header(stats: EngineStats, now: datetime, database: str | None, state: str) -> Text:
    header = Text()
    header.append("qbflow engine", style="bold")
    if state == "stopped":
        header.append("  stopped", style="bold")
    elif state == "stopping":
        header.append("  stopping: waiting for runs in flight to finish…", style="bold yellow")
    else:
        header.append("  running", style="bold green")
    started = _utc(stats.started_at) or now
    header.append(f" since {started:%Y-%m-%d %H:%M:%S} UTC ({_span((now - started).total_seconds())})")
    if stats.last_cycle_at is not None:
        header.append(f"; last cycle {_clock(stats.last_cycle_at, now)}")
    if database:
        header.append("\ndatabase ")
        header.append(database, style="cyan")
    if stats.paused:
        header.append("\npaused (needs reconnecting): " + ", ".join(stats.paused), style="bold yellow")
        header.append(" · `qbflow connect NAME` resumes it", style="yellow")
    if state == "running":
        header.append("\n" + STOP_HINT, style="dim")
    return header


# Below this width (a terminal's columns) times are shown relative only ("10 s ago", "in 5 min").
COMPACT_WIDTH = 100


@dataclass(frozen=True)
class _Column:
    """A column of a table fitted to the terminal: `keep` orders which columns go first when it is too narrow
    (the highest goes first); a column never gets narrower than its header, so headers stay on one line."""

    header: str
    keep: int
    min_width: int = 0
    cap: int | None = None  # grows at most to this; longer content folds or is cut
    flex: bool = False  # takes the width left once the others have theirs
    justify: Literal["left", "right"] = "left"
    no_wrap: bool = False
    overflow: Literal["fold", "ellipsis"] = "fold"
    style: str = ""
    fold_into: int | None = None  # when left out, its text goes on a line under this column's cell...
    fold_as: Callable[[str], str] = str  # ...said this way ("" says nothing)
    shown_from: int = 0  # left out below this table width, whatever room there is

    def least(self, desired: int) -> int:
        """The narrowest it may be: its header (and `min_width`); all its content when it may not wrap."""
        return max(self.min_width, len(self.header), desired if self.no_wrap else 0)


Row = list[RenderableType]


def _fit_widths(columns: list[_Column], desired: list[int], width: int) -> dict[int, int]:
    """{column index: width} for the columns that fit in `width` terminal cells (borders and padding
    included): the least important are left out until the others fit at their least width; the space left
    goes to the kept columns in order of importance, each up to what its content needs (or its cap), and what
    remains to the flexible ones."""
    def total(kept: list[int]) -> int:  # every column has 1 cell of padding each side and a border
        return sum(columns[k].least(desired[k]) for k in kept) + 3 * len(kept) + 1

    kept = [k for k, column in enumerate(columns) if width >= column.shown_from]
    while len(kept) > 1 and total(kept) > width:
        kept.remove(max(kept, key=lambda k: columns[k].keep))
    widths = {k: columns[k].least(desired[k]) for k in kept}
    spare = max(0, width - total(kept))
    for k in sorted(kept, key=lambda k: columns[k].keep):
        if columns[k].flex:
            continue
        goal = min(desired[k], columns[k].cap or desired[k])
        grow = min(spare, max(0, goal - widths[k]))
        widths[k] += grow
        spare -= grow
    flexible = [k for k in kept if columns[k].flex] or kept[-1:]
    for n, k in enumerate(flexible):
        share = spare // (len(flexible) - n)
        widths[k] += share
        spare -= share
    return widths


class _FittedTable:
    """A rich table whose columns are chosen and sized for the width it is drawn at (`_fit_widths`), so it
    reads the same in 60 columns as in 200; `rows(compact)` makes the rows, `compact` below COMPACT_WIDTH."""

    def __init__(self, title: str, columns: list[_Column], rows: Callable[[bool], list[Row]], *,
                 caption: str | None = None) -> None:
        self.title, self.columns, self.rows, self.caption = title, columns, rows, caption

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        yield self.table(console, options)

    def table(self, console: Console, options: ConsoleOptions) -> Table:
        width = options.max_width
        rows = self.rows(width < COMPACT_WIDTH)
        desired = [max([len(column.header), *(_cell_width(console, options, row[k]) for row in rows)])
                   for k, column in enumerate(self.columns)]
        widths = _fit_widths(self.columns, desired, width)
        table = Table(title=self.title, title_justify="left", caption=self.caption)
        for k, column in enumerate(self.columns):
            if k in widths:
                table.add_column(column.header, width=widths[k], justify=column.justify, no_wrap=column.no_wrap,
                                 overflow=column.overflow, style=column.style)
        for row in rows:
            cells = {k: row[k] for k in widths}
            folded: dict[int, list[str]] = {}
            for k, column in enumerate(self.columns):
                if k not in widths and column.fold_into in cells and (said := column.fold_as(_plain(row[k]))):
                    folded.setdefault(column.fold_into, []).append(said)
            for target, words in folded.items():
                cells[target] = Text.assemble(_as_text(cells[target]), "\n", (" ".join(words), "dim"))
            table.add_row(*(cells[k] for k in sorted(cells)))
        return table


def _as_text(cell: RenderableType) -> Text:
    return cell if isinstance(cell, Text) else Text(str(cell))


def _plain(cell: RenderableType) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _cell_width(console: Console, options: ConsoleOptions, cell: RenderableType) -> int:
    return Measurement.get(console, options, _as_text(cell) if isinstance(cell, str) else cell).maximum


def _when(moment: datetime | None, now: datetime, compact: bool) -> str:
    """A past moment: "10:00:05 (5 s ago)", or "5 s ago" when compact; "never" for none."""
    moment = _utc(moment)
    if moment is None:
        return "never"
    return f"{_span((now - moment).total_seconds())} ago" if compact else _ago(moment, now)


def _triggers_table(workflows: list[WorkflowRecord], cursors: list[CursorRecord], now: datetime) -> _FittedTable:
    columns = [
        _Column("Workflow", keep=0, min_width=10, cap=32),
        _Column("Trigger", keep=4, min_width=12, overflow="ellipsis", fold_into=0),
        _Column("Connection", keep=5, overflow="ellipsis", fold_into=0, fold_as=lambda name: f"on {name}"),
        _Column("Last poll", keep=3, no_wrap=True),
        _Column("Next poll", keep=1, no_wrap=True),
        _Column("Last error", keep=2, min_width=16, flex=True, style="red"),
    ]
    by_workflow: dict[int, list[CursorRecord]] = {}
    for cursor in cursors:
        by_workflow.setdefault(cursor.workflow_id, []).append(cursor)

    def rows(compact: bool) -> list[Row]:
        made: list[Row] = []
        for workflow in workflows:
            key, connection = _trigger_of(workflow)
            name = Text(workflow.name, style="" if workflow.enabled else "dim")
            polled: list[CursorRecord | None] = [*by_workflow.get(workflow.id, [])] or [None]
            for cursor in polled:
                moment = _utc(cursor.next_poll_at) if cursor is not None else None
                if not workflow.enabled:
                    next_poll = Text("disabled", style="dim")
                elif moment is None or moment <= now:
                    next_poll = Text("due")
                else:
                    wait = f"in {_span((moment - now).total_seconds())}"
                    next_poll = Text(wait if compact else f"{_clock(moment, now)} ({wait})")
                made.append([name, cursor.trigger_key if cursor else key, cursor.connection if cursor else connection,
                             _when(cursor.last_poll_at if cursor else None, now, compact), next_poll,
                             Text(_short(cursor.last_error if cursor else None, 200))])
        if not workflows:
            made.append([Text("no workflows: `qbflow workflow add FILE`", style="dim"), "", "", "", "", ""])
        return made

    return _FittedTable("Triggers", columns, rows)


def _runs_table(runs: list[RunRecord], now: datetime) -> _FittedTable:
    columns = [
        _Column("ID", keep=0, justify="right", no_wrap=True),
        _Column("Workflow", keep=3, min_width=8, cap=32),
        _Column("Status", keep=1, no_wrap=True,
                min_width=max((len(run.status) for run in runs), default=0)),
        _Column("Attempt", keep=6, justify="right", no_wrap=True, shown_from=COMPACT_WIDTH, fold_into=2,
                fold_as=lambda attempt: f"attempt {attempt}" if attempt not in ("0", "1") else ""),
        _Column("Started", keep=5, no_wrap=True),
        _Column("Duration", keep=4, justify="right", no_wrap=True),
        _Column("Error", keep=2, min_width=16, flex=True),
    ]

    def rows(compact: bool) -> list[Row]:
        made: list[Row] = []
        for run in runs:
            started, finished = _utc(run.started_at), _utc(run.finished_at)
            if started is None:
                duration = "-"
            elif finished is not None:
                duration = _duration(max(0.0, (finished - started).total_seconds()))
            elif run.status == RUN_RUNNING:
                duration = _duration(max(0.0, (now - started).total_seconds())) + "…"
            else:
                duration = "-"
            error = Text(_short(run.error, 120), style="red" if run.status == RUN_FAILED else "yellow")
            if run.status == RUN_WAITING_RETRY and run.next_attempt_at is not None:
                error = Text(f"retry at {_clock(run.next_attempt_at, now)}: ", style="yellow") + error
            made.append([str(run.id), run.workflow_name, Text(run.status, style=_STATUS_STYLE.get(run.status, "")),
                         str(run.attempt), _clock(started, now), duration, error])
        if not runs:
            made.append(["", Text("no runs yet", style="dim"), "", "", "", "", ""])
        return made

    return _FittedTable("Recent runs", columns, rows)


def _counters(stats: EngineStats) -> Text:
    text = Text()
    text.append("since start: ", style="bold")
    text.append(f"cycles {stats.cycles} · polls {stats.polls}")
    if stats.requests is not None:
        text.append(f" · QBO requests {stats.requests}")
    text.append(f" · new events {stats.events} · runs {stats.runs} (")
    text.append(f"{stats.succeeded} succeeded", style="green" if stats.succeeded else "")
    text.append(", ")
    text.append(f"{stats.failed} failed", style="red" if stats.failed else "")
    text.append(", ")
    text.append(f"{stats.retrying} waiting to retry", style="yellow" if stats.retrying else "")
    text.append(") · ")
    text.append(f"problems {stats.problem_count}", style="red" if stats.problems else "")
    return text


def _problems_table(stats: EngineStats, now: datetime) -> _FittedTable:
    recent = stats.recent_problems()
    columns = [
        _Column("Times", keep=0, justify="right", no_wrap=True),
        _Column("Last seen", keep=1, no_wrap=True),
        _Column("Problem", keep=0, min_width=16, flex=True, style="red"),
    ]

    def rows(compact: bool) -> list[Row]:
        return [[f"×{problem.count}", _when(problem.last_seen, now, compact), Text(_short(problem.message, 300))]
                for problem in recent]

    hidden = len(stats.problems) - len(recent)
    return _FittedTable("Problems", columns, rows,
                        caption=f"and {hidden} other problem(s) seen earlier" if hidden > 0 else None)


def build_view(runs: RunStore, stats: EngineStats, *, now: datetime | None = None, database: str | None = None,
               state: str = "running", limit: int = RECENT_RUNS) -> RenderableType:
    """The live view as a rich renderable: header, triggers, the `limit` newest runs, counters, problems.

    Read from the database (`runs`) and `stats`; `state` is "running", "stopping" or "stopped". The tables fit
    the width they are drawn at: on a narrow terminal the less important columns are left out (the trigger and
    connection, the attempt, then the times), times are shown relative only, and every header stays on one line.
    """
    now = _utc(now) or datetime.now(UTC)
    parts: list[RenderableType] = [
        _header(stats, now, database, state),
        _triggers_table(runs.list_workflows(), runs.list_cursors(), now),
        _runs_table(runs.list_runs(limit=limit), now),
        _counters(stats),
    ]
    if stats.problems:
        parts.append(_problems_table(stats, now))
    return Group(*parts)


# --- one line per busy cycle -----------------------------------------------------------------------------

class CycleLines:
    """An engine's `on_cycle` that prints one line per busy cycle (`summary_line`) and counts `stats`; a cycle
    whose only news is the last printed line's problems is not printed again (a note counts the repeats
    once something else happens, or at `finish`)."""

    def __init__(self, console: Console, stats: EngineStats | None = None) -> None:
        self.console = console
        self.stats = stats
        self._last_problems: list[str] = []
        self._repeats = 0

    def __call__(self, report: Any) -> None:
        if self.stats is not None:
            self.stats.add_cycle(report)
        line = summary_line(report)
        if line is None:
            return
        polls, _events, runs, errors = _counts(report)
        if not polls and not runs and errors == self._last_problems:
            self._repeats += 1
            return
        self.finish()
        self._last_problems = errors
        self.console.print(line, markup=False, highlight=False)

    def finish(self) -> None:
        """Print the pending note about repeated problems, if any."""
        if self._repeats:
            self.console.print(f"(the problems above came back {self._repeats} more time(s))", markup=False,
                               highlight=False)
            self._repeats = 0


