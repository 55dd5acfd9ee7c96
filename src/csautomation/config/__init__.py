"""Reading configuration files: YAML with the line of every value, the one duration grammar,
and the one loop over a folder of YAML files that collects every problem with its place."""

from csautomation.config.duration import (
    Duration,
    Interval,
    ShortDuration,
    format_duration,
    parse_duration,
)
from csautomation.config.files import Loaded, Parsed, load_yaml_files, yaml_files
from csautomation.config.source import (
    Document,
    PathKey,
    YamlSyntaxError,
    describe,
    format_path,
    load_file,
    load_text,
    model_fields_of,
    validation_problems,
)

__all__ = [
    "Document",
    "Duration",
    "Interval",
    "Loaded",
    "Parsed",
    "PathKey",
    "ShortDuration",
    "YamlSyntaxError",
    "describe",
    "format_duration",
    "format_path",
    "load_file",
    "load_text",
    "load_yaml_files",
    "model_fields_of",
    "parse_duration",
    "validation_problems",
    "yaml_files",
]
