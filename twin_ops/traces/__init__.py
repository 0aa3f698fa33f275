"""Traces of the twin's answers and the feedback on them.

    store.py   the trace store (SQLite, WAL): one record per answer, feedback beside it
    export.py  feedback → data/feedback/<author>/feedback.jsonl for the datasets step (GX-validated)

The serving API writes traces; the CLI reads them (`twin-ops traces`, `twin-ops feedback export`).
"""
