"""Workflows: the file format and its validation, field mapping (sandboxed templates), the runner, the
schedulers (embedded, Procrastinate workers) and the live view of a running engine.

Knows QBO only through `qbflow.connector` and `qbflow.qbo`; never imports `qbflow.server`, `qbflow.sandbox` or
`qbflow.app` (the processes that wire them together are `qbflow.app`'s).
"""
