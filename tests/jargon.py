"""Words of pydantic and Python that must never reach a CS ops person in a message."""

JARGON = (
    "Input should",
    "input should",
    "instance of",
    "union_tag",
    "function-after",
    "function-before",
    "Value error",
    "validation error",
    "Field required",
    "<fact>",
    "after validation",
    "Extra inputs",
    "Traceback",
)
