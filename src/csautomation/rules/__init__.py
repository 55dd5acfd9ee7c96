"""The YAML rule language, its compilation, and its two evaluation paths."""
