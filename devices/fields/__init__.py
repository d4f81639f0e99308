"""Declared fields and safe TOML reading, shared by every layer.

Nothing here imports the project, so ``fsm``, ``devices``, ``hw_mocks`` and
``agent`` may all use it without breaking the layering rules.
"""

from devices.fields.fields import ABSENT, REQUIRED, Field, FieldError, check_table, fields
from devices.fields.tomlfile import MAX_DEPTH, MAX_SIZE, TomlFileError, read_toml

__all__ = [
    "ABSENT",
    "REQUIRED",
    "Field",
    "FieldError",
    "check_table",
    "fields",
    "MAX_DEPTH",
    "MAX_SIZE",
    "TomlFileError",
    "read_toml",
]
