"""Helpers the tests share (never imported by twin_ops or benchmarks)."""
