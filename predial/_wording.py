"""pydantic's validation errors in predial's words, for every surface that validates
what a user wrote: `predial.toml` (config.py) and leads (models.py).

The input itself is never quoted (it may be a secret or a phone number); its type
is, where the type is what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, time
from typing import Any, Literal

from pydantic_core import ErrorDetails

__all__ = ["value_problem"]

Syntax = Literal["toml", "json"]

_TYPE_WORDS: dict[str, str] = {
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text (in quotes)",
    "list_type": "must be a list ([...])",
    "tuple_type": "must be a list ([...])",
    "set_type": "must be a list ([...])",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
}
_BOUND_WORDS: dict[str, tuple[str, str]] = {
    "greater_than": ("gt", "must be greater than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than": ("lt", "must be less than {}"),
    "less_than_equal": ("le", "must be at most {}"),
}
# What TOML calls a table, JSON calls an object.
_JSON_WORDS = {"a table": "an object ({...})", "true/false": "true or false"}


def value_problem(item: ErrorDetails, syntax: Syntax = "toml") -> str:
    """What is wrong with one value, as its writer would say it ("must be a whole
    number, not text"). Unknown and missing keys are the caller's to word: only it
    knows which keys exist there."""
    words = _value_problem(item)
    if syntax == "json":
        for toml_word, json_word in _JSON_WORDS.items():
            words = words.replace(toml_word, json_word)
    return words


def _value_problem(item: ErrorDetails) -> str:
    kind = item["type"]
    context: dict[str, Any] = dict(item.get("ctx") or {})
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]}, not {_type_name(item.get('input'))}"
    if kind in _BOUND_WORDS:
        key, words = _BOUND_WORDS[kind]
        bound = context.get(key)
        return words.format(f"{bound:g}" if isinstance(bound, float) else bound)
    if kind in ("literal_error", "enum"):
        return f"must be {context.get('expected')}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind == "string_too_short":
        minimum = context.get("min_length")
        return "must not be empty" if minimum == 1 else f"must be at least {minimum} characters"
    if kind == "string_too_long":
        return f"must be at most {context.get('max_length')} characters"
    if kind == "too_short":
        minimum = context.get("min_length")
        return "must not be empty" if minimum == 1 else f"must have at least {minimum} items"
    if kind == "too_long":
        return f"must have at most {context.get('max_length')} items"
    message = item["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    message = message.replace("Input should be ", "must be ")
    return message[:1].lower() + message[1:] if message[:2] != message[:2].upper() else message


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, date | time):
        return "a date/time"
    if value is None:
        return "null"
    return type(value).__name__
