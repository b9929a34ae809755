"""Check parsed boto3 responses against botocore's OUTPUT shapes (boto3 validates only inputs)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import botocore.session
from botocore.model import ListShape, Shape, StructureShape

MODEL = botocore.session.get_session().get_service_model("bedrock-runtime")


def violations(shape: Shape, value: Any, path: str = "$") -> list[str]:
    """Required members, types, enums, string patterns and lengths; empty when the value conforms."""
    meta = shape.metadata
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            return [f"{path}: expected object, got {type(value).__name__}"]
        out = [
            f"{path}.{name}: required member missing" for name in shape.required_members if name not in value
        ]
        for name, member in shape.members.items():
            if name in value and member.serialization.get("location") != "header":
                out += violations(member, value[name], f"{path}.{name}")
        return out
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{path}: expected list"]
        return [v for i, item in enumerate(value) for v in violations(shape.member, item, f"{path}[{i}]")]
    if shape.type_name == "timestamp":
        return [] if isinstance(value, datetime) else [f"{path}: expected a parsed timestamp, got {value!r}"]
    if shape.type_name == "string":
        if not isinstance(value, str):
            return [f"{path}: expected string, got {type(value).__name__}"]
        out = []
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            out.append(f"{path}: {value!r} not in {enum}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            out.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if len(value) < meta.get("min", 0) or len(value) > meta.get("max", 10**9):
            out.append(f"{path}: length {len(value)} outside [{meta.get('min')}, {meta.get('max')}]")
        return out
    return []


def assert_output_conforms(operation: str, response: dict[str, Any]) -> None:
    shape = MODEL.operation_model(operation).output_shape
    assert shape is not None
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    problems = violations(shape, body)
    assert not problems, problems
