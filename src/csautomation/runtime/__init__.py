"""Processes: the Temporal dev server, workers, the signal pipeline, and the demo."""
