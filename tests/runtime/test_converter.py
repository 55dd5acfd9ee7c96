"""The clients' data converter writes pydantic's bytes, and builds a type's adapter once
however many converters the SDK makes (one per workflow task)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter

from csautomation.runtime import converter
from csautomation.workflows.types import ActionResult, EscalationInput, PlaybookInput
from playbook_support import playbook_input


def values() -> list[Any]:
    return [
        playbook_input(),
        EscalationInput(
            account_id="ACME", severity="high", reason="Health fell", source_workflow_id="rule:r"
        ),
        ActionResult(connector="local", record_id="7", created=True),
        {"usage.logins_change_30d_pct": -70.0, "at": datetime(2026, 11, 1, tzinfo=UTC)},
        None,
        b"raw",
    ]


def test_payloads_are_pydantic_converters_bytes() -> None:
    ours = converter.data_converter.payload_converter.to_payloads(values())
    theirs = pydantic_data_converter.payload_converter.to_payloads(values())
    assert ours == theirs  # so histories written by either replay with either


def test_values_come_back_as_they_went() -> None:
    sent = values()
    hints = [PlaybookInput, EscalationInput, ActionResult, dict, type(None), bytes]
    payloads = converter.SharedPydanticPayloadConverter().to_payloads(sent)
    back = converter.SharedPydanticPayloadConverter().from_payloads(payloads, hints)
    assert back[:3] == sent[:3]
    assert back[3]["usage.logins_change_30d_pct"] == -70.0
    assert back[4:] == [None, b"raw"]


def test_a_types_adapter_is_built_once_across_converters() -> None:
    payloads = pydantic_data_converter.payload_converter.to_payloads([playbook_input()])
    converter.SharedPydanticPayloadConverter().from_payloads(payloads, [PlaybookInput])
    built = converter._JSON._type_adapter.cache_info().misses
    for _ in range(5):  # as the SDK does: a fresh converter for each workflow task
        fresh = converter.SharedPydanticPayloadConverter()
        assert fresh.from_payloads(payloads, [PlaybookInput]) == [playbook_input()]
    assert converter._JSON._type_adapter.cache_info().misses == built
    # pydantic's own converter builds it again in each instance: what this module avoids
    theirs = pydantic_data_converter.payload_converter_class
    assert theirs().converters[b"json/plain"] is not theirs().converters[b"json/plain"]
