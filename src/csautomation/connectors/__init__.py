"""Connectors: one interface per capability, one module per vendor."""
