"""Workflows: the file format and its validation, field mapping (sandboxed templates), and later the runner.

Knows QBO only through `qbflow.connector`.
"""
