"""Temporal workflow classes only (sandbox-safe imports)."""
