"""Intervention playbooks: the YAML language of workflows/, validated before anything runs."""
