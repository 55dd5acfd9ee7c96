"""config.duration: one grammar for every file, each kind of file with its own wording."""

from datetime import timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from csautomation.config import Duration, Interval, ShortDuration, format_duration


@pytest.mark.parametrize("kind", [Duration, ShortDuration, Interval])
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("10s", timedelta(seconds=10)),
        ("1.5m", timedelta(seconds=90)),
        ("30 m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("14d", timedelta(days=14)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_every_kind_reads_the_same_grammar(kind: object, text: str, value: timedelta) -> None:
    adapter = TypeAdapter(kind)
    assert adapter.validate_python(text) == value
    assert adapter.validate_python(adapter.dump_python(value, mode="json")) == value


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (
            Duration,
            5,
            "expected a duration such as 30m, 12h, 14d or 2w, found 5; add a unit, e.g. 5d",
        ),
        (Duration, "3 days", "found '3 days'; write 3d"),
        (Duration, "0d", "a duration must be longer than zero, found '0d'"),
        (ShortDuration, 5, "expected a duration such as 500ms, 10s, 5m or 1h, found 5"),
        (Interval, "0m", "expected a duration such as 30s, 15m, 1h or 1d, found '0m'"),
        (Interval, 15, "found 15; add a unit, e.g. 15m"),
    ],
)
def test_each_kind_keeps_its_wording(kind: object, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(kind).validate_python(value)
    assert str(caught.value.errors()[0]["msg"]).endswith(message)


def test_the_shortest_exact_spelling_is_written() -> None:
    assert [
        format_duration(timedelta(**kw))
        for kw in ({"weeks": 2}, {"days": 3}, {"hours": 36}, {"seconds": 90}, {"milliseconds": 250})
    ] == ["2w", "3d", "36h", "90s", "250ms"]
