"""Helpers shared by test files of several folders (and the benchmarks). Fixtures defined here are made
available to a folder by importing them into its conftest.py.

    postgres.py   a new empty PostgreSQL database per test (QBFLOW_TEST_POSTGRES_URL)
    sandbox.py    `qbflow sandbox` in a subprocess on a free port
    connect.py    `qbflow connect` to it from a subprocess: the app's credentials, the environment, stored records
    procs.py      `qbflow run` / `qbflow worker` subprocesses, and the `qbflow` command itself
    workers.py    many companies connected at once, and what the worker tests count
    clients.py    a QBOClient over the in-process sandbox, counting transports, tokens
    stores.py     the store and run store fixtures, a connection to the in-process sandbox, runs as a poll makes them
    engine.py     the engine's fast retry policies and clients over the in-process sandbox
    webhooks.py   the server with its engine and a sandbox sending it webhooks, in process
"""
