"""The YAML rule language, its compilation, and its two evaluation paths.

The seam is its modules (imported by name, so that importing the package loads no
durable_rules): spec (the language), loader, ir (the compiled form), engine and runtime (the
streaming path), batch and backtest (the batch path), explain and testcases. compact and
compile are their internals.
"""

__all__ = [
    "backtest",
    "batch",
    "engine",
    "explain",
    "ir",
    "loader",
    "runtime",
    "spec",
    "testcases",
]
