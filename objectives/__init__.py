"""Reusable Objective subclasses, one module per field (ml, rl, prompts, trading, perf)."""
