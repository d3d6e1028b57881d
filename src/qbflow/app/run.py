"""The engine in the foreground, as `qbflow run` (and `qbflow up`, `qbflow serve`) run it.

    await run_engine(store)                                   # until Ctrl-C or SIGTERM
    await run_engine(store, once=True)                        # one forced cycle, one summary line, return
    await run_engine(store, stop=event, on_ready=ready)       # embedded: the caller decides when it stops
    parts = await build_engine(store)                         # the engine only, for a caller that serves it too

On a terminal (or `live=True`) the live view (`qbflow.engine.live.build_view`) is redrawn after every cycle and
every second; while it is drawn, the `qbflow` loggers write through the same console so log lines never tear it.
Elsewhere (logs, CI, pipes, `live=False`) a cycle that did something prints one line (`CycleLines`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rich.console import Console, RenderableType
from rich.live import Live
from rich.logging import RichHandler

from qbflow.app.signals import stop_on_signals
from qbflow.engine.clients import ClientFactory, ClientPool
from qbflow.engine.executor import DEFAULT_PUBLIC_URL
from qbflow.engine.live import STOP_HINT, CycleLines, EngineStats, build_view, summary_line
from qbflow.engine.runner import Runner, store_clients
from qbflow.engine.scheduler import CycleReport, Engine, RunExecutor
from qbflow.settings import get_settings
from qbflow.store import Store
from qbflow.store.approvals import ApprovalStore
from qbflow.store.runs import RunRecord, RunStore

__all__ = ["EngineParts", "build_engine", "run_engine"]

log = logging.getLogger("qbflow.app.run")

REFRESH_SECONDS = 1.0


class _CountingRunner:
    """The runner, with each run's outcome counted for the view."""

    def __init__(self, runner: RunExecutor, stats: EngineStats) -> None:
        self._runner = runner
        self._stats = stats

    async def run_once(self, run_id: int, claimed: RunRecord | None = None, *, detail: bool = True) -> RunRecord:
        record = await self._runner.run_once(run_id, claimed, detail=detail)
        self._stats.add_run(record)
        return record


@contextlib.contextmanager
def _logs_through(console: Console) -> Iterator[None]:
    """Route the `qbflow` loggers through `console` (above the live view) instead of the root handlers."""
    logger = logging.getLogger("qbflow")
    handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _database(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=True)


async def _run_live(engine: Engine, runs: RunStore, stats: EngineStats, console: Console, *, tick: float,
                    stop: asyncio.Event, on_ready: Callable[[], None] | None, database: str | None) -> None:
    failed_draw: list[str] = []

    def render(state: str | None = None) -> RenderableType:
        return build_view(runs, stats, database=database,
                          state=state or ("stopping" if stop.is_set() else "running"))

    with _logs_through(console), Live(render(), console=console, auto_refresh=False, transient=False,
                                      redirect_stdout=True, redirect_stderr=True) as view:

        def refresh(state: str | None = None) -> None:
            try:
                view.update(render(state), refresh=True)
            except Exception as error:  # the view must never stop the engine; say so once per new reason
                if str(error) not in failed_draw:
                    failed_draw.append(str(error))
                    log.warning("could not redraw the view: %s", error)

        def on_cycle(report: CycleReport) -> None:
            stats.add_cycle(report)
            refresh()

        async def keep_fresh() -> None:  # clocks move and runs finish even while a long cycle runs
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=REFRESH_SECONDS)
                refresh()

        refresher = asyncio.create_task(keep_fresh())
        try:
            if on_ready is not None:
                on_ready()
            await engine.run_forever(tick=tick, on_cycle=on_cycle, stop=stop)
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        refresh("stopped")


async def _run_plain(engine: Engine, stats: EngineStats, console: Console, *, tick: float, stop: asyncio.Event,
                     on_ready: Callable[[], None] | None) -> None:
    lines = CycleLines(console, stats)
    console.print("qbflow engine running; " + STOP_HINT, markup=False, highlight=False)
    if on_ready is not None:
        on_ready()
    await engine.run_forever(tick=tick, on_cycle=lines, stop=stop)
    lines.finish()


@dataclass
class EngineParts:
    """The engine of one process as `build_engine` makes it: the scheduler, its runner, the store they use,
    the counters the view shows, and how many runs left unfinished it queued again."""

    engine: Engine
    runner: Runner
    runs: RunStore
    stats: EngineStats
    resumed: int  # runs left running by a crash or a stop, queued again
    pool: ClientPool | None = None

    async def aclose(self) -> None:
        """Close the QuickBooks clients the engine kept (call once the engine has stopped)."""
        if self.pool is not None:
            await self.pool.aclose()


async def build_engine(store: Store, *, clients: ClientFactory | None = None, max_runs: int | None = None,
                       runs_per_company: int | None = None) -> EngineParts:
    """The scheduler and runner over `store` (`qbflow run`, `serve` and `up` all use this). Runs a crash or a stop
    left running are put back in the queue, to resume (with the same request ids) as soon as the engine cycles.
    `clients` defaults to the store's connections; `max_runs` and `runs_per_company` to the settings."""
    settings = get_settings()
    runs = RunStore(store.engine)
    # One client per connection for the engine's lifetime: polls and runs reuse its connections to Intuit.
    pool = None
    if clients is None:
        pool = ClientPool(store_clients(store))
        clients = pool
    stats = EngineStats()
    runner = Runner(runs, clients, approvals=ApprovalStore.of(store),
                    public_url=settings.public_url or DEFAULT_PUBLIC_URL)
    resumed = runs.requeue_running()
    engine = Engine(runs, clients, _CountingRunner(runner, stats),
                    max_runs=max_runs or settings.max_runs,
                    runs_per_company=runs_per_company or settings.runs_per_company)
    return EngineParts(engine=engine, runner=runner, runs=runs, stats=stats, resumed=resumed, pool=pool)


async def run_engine(store: Store, *, once: bool = False, tick: float = 1.0, live: bool | None = None,
                     console: Console | None = None, stop: asyncio.Event | None = None,
                     on_ready: Callable[[], None] | None = None, clients: ClientFactory | None = None,
                     parts: EngineParts | None = None, max_runs: int | None = None,
                     runs_per_company: int | None = None) -> None:
    """Run the engine on `store` (a `qbflow.store.Store`): resume what a crash left running, then cycle.

    `once`: one forced cycle (every enabled trigger polled now), its summary line, return. Otherwise cycle
    every `tick` seconds until `stop` is set; without a `stop` of the caller's, SIGINT and SIGTERM set one
    (main thread only). `on_ready` is called once the engine is about to cycle. Runs in flight finish, then
    "stopped." is printed. `live=None` draws the live view when `console` is a terminal, plain lines
    otherwise. `clients` (connection name -> QBOClient) defaults to the store's connections. `parts` are the
    engine `build_engine` made (when the caller needs the engine first, e.g. for a server); default: built here.
    """
    console = console or Console()
    if parts is None:
        parts = await build_engine(store, clients=clients, max_runs=max_runs, runs_per_company=runs_per_company)
        try:
            await run_engine(store, once=once, tick=tick, live=live, console=console, stop=stop, on_ready=on_ready,
                             parts=parts)
        finally:
            await parts.aclose()
        return
    engine, runs, stats = parts.engine, parts.runs, parts.stats
    if parts.resumed:
        console.print(f"resuming {parts.resumed} run(s) left unfinished", markup=False)
    if once:
        line = summary_line(await engine.cycle(force=True))
        if line is not None:
            console.print(line, markup=False, highlight=False)
        return
    own_stop = stop is None
    stop = stop if stop is not None else asyncio.Event()
    if live is None:
        live = console.is_terminal
    with stop_on_signals(stop) if own_stop else contextlib.nullcontext():
        if live:
            await _run_live(engine, runs, stats, console, tick=tick, stop=stop, on_ready=on_ready,
                            database=_database(store))
        else:
            await _run_plain(engine, stats, console, tick=tick, stop=stop, on_ready=on_ready)
    console.print("stopped.", markup=False)
