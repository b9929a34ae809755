"""Check request JSON against botocore's published `bedrock-runtime` input shapes, the way AWS does.

botocore's own client-side validation skips patterns and maxima, and non-boto3 clients send anything, so the
server re-checks required members, types, enums, string patterns and min/max from the service model.
"""

from __future__ import annotations

import re
from collections.abc import Sized
from functools import cache
from typing import Any

import botocore.session
from botocore.model import ListShape, OperationModel, ServiceModel, Shape, StructureShape

from emulators.bedrock_runtime.errors import validation


@cache
def service_model() -> ServiceModel:
    """botocore's model of bedrock-runtime (the published contract)."""
    return botocore.session.get_session().get_service_model("bedrock-runtime")


def operation(name: str) -> OperationModel:
    return service_model().operation_model(name)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _length_errors(meta: dict[str, Any], value: Sized, where: str) -> list[str]:
    errors = []
    if "min" in meta and len(value) < meta["min"]:
        errors.append(f"{where} have length greater than or equal to {meta['min']}")
    if "max" in meta and len(value) > meta["max"]:
        errors.append(f"{where} have length less than or equal to {meta['max']}")
    return errors


def shape_errors(shape: Shape, value: Any, path: str) -> list[str]:
    """AWS-style constraint messages for `value` against `shape` (empty when valid)."""
    meta = shape.metadata
    where = f"Value '{_short(value)}' at '{path}' failed to satisfy constraint: Member must"
    if isinstance(shape, StructureShape):
        if meta.get("document"):
            return [] if isinstance(value, dict) else [f"{where} be a JSON object"]
        if not isinstance(value, dict):
            return [f"{where} be a structure"]
        errors: list[str] = []
        for name in shape.required_members:
            if value.get(name) is None:
                errors.append(
                    f"Value null at '{path + '.' if path else ''}{name}' failed to satisfy "
                    "constraint: Member must not be null"
                )
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                errors += shape_errors(member, value[name], f"{path + '.' if path else ''}{name}")
        return errors
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{where} be a list"]
        errors = _length_errors(meta, value, where)
        for i, item in enumerate(value):
            errors += shape_errors(shape.member, item, f"{path}.{i + 1}.member")
        return errors
    if shape.type_name == "string":
        if not isinstance(value, str):
            return [f"{where} be a string"]
        errors = _length_errors(meta, value, where)
        enum: list[str] = getattr(shape, "enum", None) or []
        if enum and value not in enum:
            errors.append(f"{where} satisfy enum value set: [{', '.join(enum)}]")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            errors.append(f"{where} satisfy regular expression pattern: {meta['pattern']}")
        return errors
    if shape.type_name in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where} be an integer"]
        errors = []
        if "min" in meta and value < meta["min"]:
            errors.append(f"{where} have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            errors.append(f"{where} have value less than or equal to {meta['max']}")
        return errors
    return []


def check_input(operation_name: str, params: dict[str, Any]) -> None:
    """Raise ValidationException listing every violated constraint of the operation's input shape."""
    shape = operation(operation_name).input_shape
    assert shape is not None
    errors = shape_errors(shape, params, "")
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        raise validation(f"{len(errors)} validation {noun} detected: " + "; ".join(errors))
