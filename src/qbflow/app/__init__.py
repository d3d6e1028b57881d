"""Process composition: `qbflow run`, `serve`, `up` and `worker` wire the engine, the server and the sandbox
together. The only room that knows all the others; `qbflow.cli` calls it, nothing below imports it.

    run.py     the engine in the foreground (`qbflow run`): build_engine, run_engine, the live view drawn
    serve.py   the HTTP server with the engine in the same process (`qbflow serve`)
    up.py      the built-in sandbox, the examples, the engine and the server at once (`qbflow up`)
    worker.py  a Procrastinate worker over PostgreSQL (`qbflow worker`)
    signals.py SIGINT/SIGTERM -> a stop event, for all of them
"""
