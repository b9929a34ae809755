"""A small evaluator of IAM identity-based policies, for emulators that check requests against a policy.

What AWS does, for the parts a least-privilege policy uses: an explicit `Deny` wins over every `Allow`; a
request no statement allows is denied (implicitly). A statement names its actions (`Action`, or every
action but some with `NotAction`) and its resources (`Resource` / `NotResource`), with `*` (any run of
characters, `/` and `:` included) and `?` (one character) as wildcards; actions compare without regard to
case, resources with it. `Condition` blocks compare the request's context keys (`s3:prefix`, say): every
operator of a block must hold, every key of an operator must hold, and one of a key's values is enough.

Refused when loaded rather than guessed at: a `Principal` (resource policies are not identity policies),
condition operators outside the string family below, and `${Name}` placeholders left unrendered (IAM
policy variables such as `${aws:username}` are not supported either). `render` fills a template's
placeholders, the form Terraform's `templatefile` and CloudFormation's `Fn::Sub` also fill.

Free of any production import (emulators never import the pipeline); tests use it to check recorded
calls against the same policy file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Decision", "Policy", "Statement", "placeholders", "render"]

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
# The condition operators understood (each also with the IfExists suffix).
_STRING_OPERATORS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike"}
Context = Mapping[str, str | Sequence[str]]


def placeholders(template: str) -> set[str]:
    """The `${Name}` placeholders a template holds."""
    return set(PLACEHOLDER.findall(template))


def render(template: str, values: Mapping[str, str]) -> str:
    """`template` with every `${Name}` replaced by `values[Name]`, JSON-escaped (the template is JSON).

    A placeholder without a value, or a value for a name the template does not hold, is a ValueError: a
    policy rendered from the wrong set of names would grant something else than intended."""
    wanted = placeholders(template)
    missing, unknown = sorted(wanted - set(values)), sorted(set(values) - wanted)
    if missing or unknown:
        raise ValueError(
            f"cannot render the policy: no value for {', '.join(missing) or 'nothing'}; "
            f"not in the template: {', '.join(unknown) or 'nothing'}"
        )
    return PLACEHOLDER.sub(lambda m: json.dumps(values[m.group(1)])[1:-1], template)


def _glob(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ValueError(f"{where} must be a string or a non-empty list of strings")
    return tuple(items)


@dataclass(frozen=True)
class Condition:
    operator: str  # as written, e.g. "StringLikeIfExists"
    key: str  # lower case: condition keys compare without regard to case
    values: tuple[str, ...]

    def holds(self, context: Mapping[str, tuple[str, ...]]) -> bool:
        base = self.operator.removesuffix("IfExists")
        negated = "Not" in base
        actual = context.get(self.key)
        if actual is None:  # the request has no such key
            return self.operator.endswith("IfExists") or negated
        if base in ("StringLike", "StringNotLike"):
            matched = any(_glob(v, ignore_case=False).fullmatch(a) for v in self.values for a in actual)
        else:
            matched = any(a == v for v in self.values for a in actual)
        return matched != negated


@dataclass(frozen=True)
class Statement:
    sid: str  # the statement's Sid, else "#<index>"
    effect: str  # "Allow" | "Deny"
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]

    @classmethod
    def parse(cls, raw: Any, index: int) -> Statement:
        if not isinstance(raw, dict):
            raise ValueError(f"statement {index} is not a JSON object")
        sid = str(raw.get("Sid") or f"#{index}")
        if raw.get("Effect") not in ("Allow", "Deny"):
            raise ValueError(f"statement {sid}: Effect must be Allow or Deny")
        if "Principal" in raw or "NotPrincipal" in raw:
            raise ValueError(f"statement {sid}: an identity-based policy has no Principal")
        if ("Action" in raw) == ("NotAction" in raw):
            raise ValueError(f"statement {sid}: give exactly one of Action and NotAction")
        if ("Resource" in raw) == ("NotResource" in raw):
            raise ValueError(f"statement {sid}: give exactly one of Resource and NotResource")
        action_key = "Action" if "Action" in raw else "NotAction"
        resource_key = "Resource" if "Resource" in raw else "NotResource"
        conditions = []
        block = raw.get("Condition", {})
        if not isinstance(block, dict):
            raise ValueError(f"statement {sid}: Condition must be a JSON object")
        for operator, keys in block.items():
            if operator.removesuffix("IfExists") not in _STRING_OPERATORS or not isinstance(keys, dict):
                raise ValueError(
                    f"statement {sid}: condition operator {operator!r} is not one this evaluator supports "
                    f"({', '.join(sorted(_STRING_OPERATORS))}, each also ...IfExists)"
                )
            for key, values in keys.items():
                where = f"statement {sid}: {operator} {key}"
                conditions.append(Condition(operator, key.lower(), _strings(values, where)))
        return cls(
            sid=sid,
            effect=raw["Effect"],
            actions=_strings(raw[action_key], f"statement {sid}: {action_key}"),
            not_action=action_key == "NotAction",
            resources=_strings(raw[resource_key], f"statement {sid}: {resource_key}"),
            not_resource=resource_key == "NotResource",
            conditions=tuple(conditions),
        )

    def applies(self, action: str, resource: str, context: Mapping[str, tuple[str, ...]]) -> bool:
        """Whether this statement speaks about the request (then its Effect decides)."""
        named = any(_glob(a, ignore_case=True).fullmatch(action) for a in self.actions)
        if named == self.not_action:
            return False
        listed = any(_glob(r, ignore_case=False).fullmatch(resource) for r in self.resources)
        if listed == self.not_resource:
            return False
        return all(c.holds(context) for c in self.conditions)


@dataclass(frozen=True)
class Decision:
    """The answer for one request: allowed, and the statements that decided it (the allowing ones, or the
    denying ones when a Deny applied; none when nothing applied)."""

    allowed: bool
    explicit_deny: bool
    statements: tuple[str, ...]


class Policy:
    """One identity-based policy document (a dict, or its JSON text)."""

    def __init__(self, document: Mapping[str, Any] | str) -> None:
        if isinstance(document, str):
            left = placeholders(document)
            if left:
                raise ValueError(f"the policy still holds placeholders: {', '.join(sorted(left))}; render it")
            document = json.loads(document)
        if not isinstance(document, Mapping):
            raise ValueError("a policy document is a JSON object")
        text = json.dumps(document)
        if placeholders(text):
            raise ValueError(f"the policy still holds placeholders: {', '.join(sorted(placeholders(text)))}")
        raw = document.get("Statement")
        raw_list = [raw] if isinstance(raw, dict) else raw
        if not isinstance(raw_list, list) or not raw_list:
            raise ValueError("a policy document needs a Statement (an object or a non-empty list)")
        self.document: dict[str, Any] = json.loads(text)
        self.statements: tuple[Statement, ...] = tuple(Statement.parse(s, i) for i, s in enumerate(raw_list))
        sids = [s.sid for s in self.statements]
        if len(set(sids)) != len(sids):
            raise ValueError(f"statement ids repeat: {sids}")

    @classmethod
    def load(cls, path: Path | str) -> Policy:
        return cls(Path(path).read_text())

    def without(self, sids: Iterable[str]) -> Policy:
        """The same policy minus the statements named."""
        drop = set(sids)
        unknown = drop - {s.sid for s in self.statements}
        if unknown:
            raise KeyError(f"no statement {', '.join(sorted(unknown))}")
        raw = self.document["Statement"]
        kept = [s for s, parsed in zip(raw, self.statements, strict=True) if parsed.sid not in drop]
        return Policy({**self.document, "Statement": kept})

    def evaluate(self, action: str, resource: str, context: Context | None = None) -> Decision:
        """Allow, explicit Deny or implicit deny for `action` on `resource` with `context` keys."""
        keys = {k.lower(): (v,) if isinstance(v, str) else tuple(v) for k, v in (context or {}).items()}
        applying = [s for s in self.statements if s.applies(action, resource, keys)]
        denying = tuple(s.sid for s in applying if s.effect == "Deny")
        if denying:
            return Decision(False, True, denying)
        allowing = tuple(s.sid for s in applying if s.effect == "Allow")
        return Decision(bool(allowing), False, allowing)
