"""SIGTERM while steps are retrying and requests hang: `qbflow run` stops within 30 s, leaves no run "running",
and the next start finishes every run with one invoice and one e-mail each (the same request ids).

Real processes: `qbflow sandbox` (no throttles) with injected faults (503s, resets and answers that take two
minutes), `qbflow connect`, `qbflow workflow add`, `qbflow run`."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path

import httpx

from qbflow.store.db import make_engine
from qbflow.store.models import RUN_RUNNING, RUN_SUCCEEDED, RUN_WAITING_RETRY
from tests.engine.test_crash import WORKFLOW, Books, tally, wait_for
from tests.support.connect import CLIENT_ID, CLIENT_SECRET
from tests.support.procs import EngineProcess, connected_env, qbflow
from tests.support.sandbox import running_sandbox

CUSTOMERS = 30
PREFIX = "Term Test"
STOP_WITHIN = 30.0  # seconds: what a service manager allows before it kills


def faults(base: str, **plan: object) -> None:
    httpx.put(f"{base}/_sandbox/faults", json=plan, timeout=10).raise_for_status()


def test_sigterm_while_steps_retry_stops_within_30_s_and_the_next_start_finishes_the_work(tmp_path: Path) -> None:
    with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit", log=tmp_path / "sandbox.log") as (base, _process):
        env = connected_env(base, tmp_path)
        books = Books(base, env)
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)).replace(microsecond=0)
        flow = tmp_path / "term.yaml"
        flow.write_text(WORKFLOW.format(since=since.isoformat().replace("+00:00", "Z"), prefix=PREFIX))
        assert qbflow(env, "workflow", "add", str(flow)).returncode == 0
        customers = [books.new_customer(f"{PREFIX} {n:03d}") for n in range(CUSTOMERS)]
        db = make_engine(env["QBFLOW_DATABASE_URL"])
        # The first steps are slow (the customers' events are stored, and runs start, before the faults come)...
        faults(base, rate=1.0, kinds=["slow"], slow_seconds=2)
        engine = EngineProcess(env, tmp_path / "engine-1.log", "--tick", "0.2", "--plain")
        try:
            wait_for(lambda: tally(db)[0] == CUSTOMERS and tally(db)[1][RUN_RUNNING] > 0, 60, "runs in flight",
                     engine)
            # ...then half the API answers fail: 503s and resets make steps retry, some answers hang two minutes.
            faults(base, rate=0.5, kinds=["503", "reset", "slow"], slow_seconds=120)
            wait_for(lambda: tally(db)[1][RUN_WAITING_RETRY] > 0 and tally(db)[1][RUN_RUNNING] > 0, 60,
                     "runs waiting to retry while others are in flight", engine)
        except BaseException:
            engine.kill()  # a failing test leaves no engine behind
            raise
        asked = time.monotonic()
        code = engine.terminate(timeout=90)
        took = time.monotonic() - asked
        _events, runs, _sent = tally(db)
        print(f"stopped in {took:.1f} s with exit code {code}; runs {dict(runs)}")
        assert code == 0, engine.output()
        assert took < STOP_WITHIN, f"took {took:.1f} s to stop:\n{engine.output()[-3000:]}"
        assert runs[RUN_RUNNING] == 0  # interrupted runs went back to the queue
        assert "stopped." in engine.output()

        faults(base, rate=0.0)
        engine = EngineProcess(env, tmp_path / "engine-2.log", "--tick", "0.2", "--plain")
        try:
            wait_for(lambda: tally(db)[1][RUN_SUCCEEDED] == CUSTOMERS, 120, f"{CUSTOMERS} succeeded runs", engine)
        finally:
            assert engine.terminate() == 0
        for log in tmp_path.glob("engine-*.log"):
            assert "Traceback" not in log.read_text(), log.read_text()
        db.dispose()

        invoices = books.query(f"select * from Invoice where DocNumber like 'CR-%' maxresults {CUSTOMERS * 2}")
        assert sorted((inv["CustomerRef"]["value"] for inv in invoices), key=int) == customers  # one each
        mails = Counter(mail["id"] for mail in books.outbox() if str(mail.get("doc_number") or "").startswith("CR-"))
        assert sorted(mails, key=int) == sorted((inv["Id"] for inv in invoices), key=int)
        assert set(mails.values()) == {1}
