"""`qbflow worker`: one Procrastinate worker on the PostgreSQL database, its QuickBooks clients pacing across
every worker (Intuit's limits are per company, whichever machine asks).

    await run_worker(store, concurrency=4, on_ready=ready)   # until SIGTERM or SIGINT (jobs in flight finish)

What a worker does (the schedule, polls, runs, stalled jobs) is `qbflow.engine.workers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from qbflow.engine.clients import ClientPool
from qbflow.engine.executor import DEFAULT_PUBLIC_URL
from qbflow.engine.runner import Runner, store_clients
from qbflow.engine.workers import WorkerOptions, Workers, ensure_schema, require_postgres
from qbflow.qbo.pacing import pacing_backend
from qbflow.settings import get_settings
from qbflow.store import Store
from qbflow.store.approvals import ApprovalStore
from qbflow.store.runs import RunStore

__all__ = ["run_worker"]


async def run_worker(store: Store, *, concurrency: int = 4, queues: Iterable[str] | None = None,
                     options: WorkerOptions | None = None, on_ready: Callable[[], None] | None = None) -> None:
    """`qbflow worker`: a worker on `store`'s PostgreSQL database, until SIGTERM or SIGINT (jobs in flight finish)."""
    require_postgres(store.engine.url)
    ensure_schema(store.engine)
    # Intuit's per-company limits held across every worker (QBFLOW_SHARED_LIMITS, on by default).
    pool = ClientPool(store_clients(store, pacer_for=lambda realm: pacing_backend(store.engine).pacer(realm)))
    runs = RunStore(store.engine)
    runner = Runner(runs, pool, approvals=ApprovalStore.of(store),
                    public_url=get_settings().public_url or DEFAULT_PUBLIC_URL)
    workers = Workers(runs, pool, runner=runner, options=options, pool_size=concurrency + 4)
    try:
        async with workers.opened():
            if on_ready is not None:
                on_ready()
            await workers.run_worker(concurrency=concurrency, queues=queues)
    finally:
        await pool.aclose()
