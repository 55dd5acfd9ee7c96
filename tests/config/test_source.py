"""config.source: a scalar YAML reads as a date but is not one is a located problem."""

from __future__ import annotations

import pytest

from csautomation.config import YamlSyntaxError, load_text


def test_an_impossible_date_is_a_located_problem_not_a_traceback() -> None:
    with pytest.raises(YamlSyntaxError) as info:
        load_text("calendars:\n  x:\n    holidays: [2026-01-01, 2026-02-30]\n", "m.yaml")
    problem = info.value.problem
    assert (problem.file, problem.line, problem.column) == ("m.yaml", 3, 28)
    assert "'2026-02-30' is not a valid date or time" in str(problem)
    assert "holidays" in str(problem)
