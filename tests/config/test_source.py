"""config.source: a scalar YAML reads as a date but is not one is a located problem; the
C parser reads files as the Python parser does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from csautomation.config import YamlSyntaxError, load_text, source
from csautomation.errors import ConfigFileError


def test_an_impossible_date_is_a_located_problem_not_a_traceback() -> None:
    with pytest.raises(YamlSyntaxError) as info:
        load_text("calendars:\n  x:\n    holidays: [2026-01-01, 2026-02-30]\n", "m.yaml")
    problem = info.value.problem
    assert (problem.file, problem.line, problem.column) == ("m.yaml", 3, 28)
    assert "'2026-02-30' is not a valid date or time" in str(problem)
    assert "holidays" in str(problem)


def _documents(loader: object) -> list[tuple[object, object]]:
    out: list[tuple[object, object]] = []
    for path in FILES:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(source, "_FAST_LOADER", loader)
            try:
                doc = source.load_file(path)
            except ConfigFileError as exc:
                out.append((str(exc), None))
            else:
                out.append((doc.data, doc.positions))
    return out


ROOT = Path(__file__).parents[2]
FILES = sorted([*ROOT.glob("rules/**/*.yaml"), *ROOT.glob("tests/rules/broken*/**/*.yaml")]) + [
    Path(__file__).parent / "unicode_columns.yaml"
]


@pytest.mark.skipif(not hasattr(yaml, "CSafeLoader"), reason="PyYAML built without libyaml")
def test_libyaml_gives_the_same_data_positions_and_errors_as_the_python_parser() -> None:
    """Shipped rules and every broken rule file: libyaml composes them (or refuses them,
    and the Python parser's message is reported) exactly as the Python parser alone."""
    assert source._FAST_LOADER is yaml.CSafeLoader  # the C parser is the one in use
    fast, slow = _documents(yaml.CSafeLoader), _documents(None)
    assert len(FILES) > 50
    for path, a, b in zip(FILES, fast, slow, strict=True):
        assert a == b, path
    refused = [a for a, b in fast if b is None]
    assert any("YAML syntax error" in str(message) for message in refused)
