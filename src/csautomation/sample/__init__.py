"""The deterministic sample data set used by the demo, backtests and benchmarks."""

__all__ = ["generate"]
