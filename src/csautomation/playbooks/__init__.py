"""Intervention playbooks: the YAML language of workflows/, validated before anything runs.

The seam is its modules: spec (the language), loader and templates.
"""

__all__ = ["loader", "spec", "templates"]
