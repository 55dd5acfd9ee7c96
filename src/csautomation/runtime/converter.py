"""The data converter of csauto's Temporal clients: pydantic's JSON, its type adapters
built once per process.

The SDK makes a new payload converter from the data converter's class for every workflow
run and every workflow task, and pydantic's converter keeps its `TypeAdapter`s per
instance: each workflow task built again the adapter of every type it decoded (a converter
and two decodes took 0.67 ms, 0.47 ms sharing them; docs/benchmarks.md, "Playbooks"). Here
every instance shares one set of encoders, so an adapter is built once. The payloads are the
same bytes as `pydantic_data_converter`'s, so histories written with either replay with
either.
"""

from __future__ import annotations

from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

__all__ = ["SharedPydanticPayloadConverter", "data_converter"]

# thread-safe: the adapters sit in an lru_cache, and validating with one holds no state
_JSON = PydanticJSONPlainPayloadConverter()
_ENCODERS = tuple(
    _JSON if isinstance(c, JSONPlainPayloadConverter) else c
    for c in DefaultPayloadConverter.default_encoding_payload_converters
)


class SharedPydanticPayloadConverter(CompositePayloadConverter):
    """`PydanticPayloadConverter`, with the encoders (and so the adapters) shared."""

    def __init__(self) -> None:
        super().__init__(*_ENCODERS)


data_converter = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)
