"""Signals in: batch import (and, next, the ingestion API and pulls)."""
