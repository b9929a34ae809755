"""The emulators' IAM policy evaluator: AWS's rules for identity-based policies, as far as they go.

Explicit Deny over Allow over the implicit deny; `*` and `?` in actions (any case) and resources (exact
case); NotAction and NotResource; string conditions, with a missing key failing a positive operator and
passing a negated one; `${Name}` placeholders rendered strictly and refused when left in.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from emulators.iam_policy import Decision, Policy, placeholders, render

BUCKET = "arn:aws:s3:::media"


def policy(*statements: dict[str, Any]) -> Policy:
    return Policy({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any, resource: Any, sid: str = "A", **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_nothing_allowed_is_an_implicit_deny() -> None:
    decision = policy(allow("s3:GetObject", f"{BUCKET}/*")).evaluate("s3:PutObject", f"{BUCKET}/a")
    assert decision == Decision(allowed=False, explicit_deny=False, statements=())


def test_an_allow_names_the_statements_that_allowed() -> None:
    p = policy(allow("s3:GetObject", f"{BUCKET}/*", "One"), allow("s3:*", "*", "Two"))
    assert p.evaluate("s3:GetObject", f"{BUCKET}/x.mp4") == Decision(True, False, ("One", "Two"))


def test_an_explicit_deny_wins_over_any_allow() -> None:
    p = policy(
        allow("s3:*", "*"),
        {"Sid": "NoSecrets", "Effect": "Deny", "Action": "s3:GetObject", "Resource": f"{BUCKET}/private/*"},
    )
    assert p.evaluate("s3:GetObject", f"{BUCKET}/private/a") == Decision(False, True, ("NoSecrets",))
    assert p.evaluate("s3:GetObject", f"{BUCKET}/public/a").allowed


def test_actions_ignore_case_and_resources_do_not() -> None:
    p = policy(allow("S3:getobject", f"{BUCKET}/Videos/*"))
    assert p.evaluate("s3:GetObject", f"{BUCKET}/Videos/a.mp4").allowed
    assert not p.evaluate("s3:GetObject", f"{BUCKET}/videos/a.mp4").allowed


@pytest.mark.parametrize(
    ("pattern", "resource", "matches"),
    [
        ("arn:aws:s3:::media/*", "arn:aws:s3:::media/a/b/c.mp4", True),  # * crosses "/"
        ("arn:aws:s3:::media/*", "arn:aws:s3:::media", False),  # the bucket is not an object in it
        ("arn:aws:bedrock:*::foundation-model/m", "arn:aws:bedrock:::foundation-model/m", True),  # empty
        ("arn:aws:bedrock:*::foundation-model/m", "arn:aws:bedrock:us-west-2::foundation-model/m", True),
        ("arn:aws:s3:::media/v?.mp4", "arn:aws:s3:::media/v1.mp4", True),
        ("arn:aws:s3:::media/v?.mp4", "arn:aws:s3:::media/v10.mp4", False),
        ("arn:aws:s3:::media/a.b", "arn:aws:s3:::media/aXb", False),  # "." is a dot, not any character
        ("arn:aws:s3:::media/[x]", "arn:aws:s3:::media/[x]", True),  # no other pattern syntax
    ],
)
def test_wildcards(pattern: str, resource: str, matches: bool) -> None:
    assert policy(allow("s3:GetObject", pattern)).evaluate("s3:GetObject", resource).allowed is matches


def test_a_resource_list_and_an_action_wildcard() -> None:
    p = policy(allow(["bedrock:Get*", "bedrock:List*"], ["arn:aws:bedrock:us-east-1:1:async-invoke/*", "*"]))
    assert p.evaluate("bedrock:ListAsyncInvokes", "*").allowed
    assert not p.evaluate("bedrock:InvokeModel", "*").allowed


def test_not_action_and_not_resource() -> None:
    p = policy(
        {"Sid": "AllButDelete", "Effect": "Allow", "NotAction": "s3:Delete*", "Resource": f"{BUCKET}/*"},
        {"Sid": "Elsewhere", "Effect": "Allow", "Action": "s3:DeleteObject", "NotResource": f"{BUCKET}/*"},
    )
    assert p.evaluate("s3:PutObject", f"{BUCKET}/a").statements == ("AllButDelete",)
    assert not p.evaluate("s3:DeleteObject", f"{BUCKET}/a").allowed
    assert p.evaluate("s3:DeleteObject", "arn:aws:s3:::lake/a").statements == ("Elsewhere",)


def test_string_like_condition_on_the_list_prefix() -> None:
    p = policy(allow("s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": ["in/*", "drop/*"]}}))
    assert p.evaluate("s3:ListBucket", BUCKET, {"s3:prefix": "in/videos/"}).allowed
    assert p.evaluate("s3:ListBucket", BUCKET, {"S3:Prefix": "drop/x"}).allowed, "keys ignore case"
    assert not p.evaluate("s3:ListBucket", BUCKET, {"s3:prefix": "private/"}).allowed
    assert not p.evaluate("s3:ListBucket", BUCKET, {"s3:prefix": "IN/x"}).allowed, "values keep case"
    assert not p.evaluate("s3:ListBucket", BUCKET).allowed, "a listing without a prefix is not allowed"


def test_every_operator_and_every_key_must_hold() -> None:
    condition = {"StringEquals": {"s3:prefix": "in/", "s3:delimiter": "/"}, "StringNotLike": {"x:y": "no*"}}
    p = policy(allow("s3:ListBucket", BUCKET, Condition=condition))
    assert p.evaluate("s3:ListBucket", BUCKET, {"s3:prefix": "in/", "s3:delimiter": "/"}).allowed
    assert not p.evaluate("s3:ListBucket", BUCKET, {"s3:prefix": "in/"}).allowed
    vetoed = {"s3:prefix": "in/", "s3:delimiter": "/", "x:y": "nope"}
    assert not p.evaluate("s3:ListBucket", BUCKET, vetoed).allowed


def test_a_missing_key_fails_a_positive_operator_and_passes_a_negated_one() -> None:
    negated = policy(allow("s3:ListBucket", BUCKET, Condition={"StringNotEquals": {"s3:prefix": "x/"}}))
    assert negated.evaluate("s3:ListBucket", BUCKET).allowed
    assert not negated.evaluate("s3:ListBucket", BUCKET, {"s3:prefix": "x/"}).allowed
    if_exists = policy(
        allow("s3:ListBucket", BUCKET, Condition={"StringLikeIfExists": {"s3:prefix": "in/*"}})
    )
    assert if_exists.evaluate("s3:ListBucket", BUCKET).allowed
    assert not if_exists.evaluate("s3:ListBucket", BUCKET, {"s3:prefix": "out/"}).allowed


def test_a_deny_with_a_condition_denies_only_where_it_holds() -> None:
    p = policy(
        allow("s3:ListBucket", BUCKET),
        {
            "Sid": "NotPrivate",
            "Effect": "Deny",
            "Action": "s3:ListBucket",
            "Resource": BUCKET,
            "Condition": {"StringLike": {"s3:prefix": "private*"}},
        },
    )
    assert p.evaluate("s3:ListBucket", BUCKET, {"s3:prefix": "private/"}).explicit_deny
    assert p.evaluate("s3:ListBucket", BUCKET, {"s3:prefix": "in/"}).allowed


def test_without_drops_the_statements_named() -> None:
    p = policy(allow("s3:GetObject", "*", "Read"), allow("s3:PutObject", "*", "Write"))
    assert [s.sid for s in p.without(["Read"]).statements] == ["Write"]
    assert not p.without(["Read"]).evaluate("s3:GetObject", f"{BUCKET}/a").allowed
    with pytest.raises(KeyError, match="Nope"):
        p.without(["Nope"])


@pytest.mark.parametrize(
    ("statement", "complaint"),
    [
        ({"Effect": "Permit", "Action": "*", "Resource": "*"}, "Effect must be Allow or Deny"),
        ({"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"}, "has no Principal"),
        ({"Effect": "Allow", "Resource": "*"}, "exactly one of Action and NotAction"),
        ({"Effect": "Allow", "Action": "*", "NotAction": "s3:*", "Resource": "*"}, "exactly one of Action"),
        ({"Effect": "Allow", "Action": "*"}, "exactly one of Resource and NotResource"),
        ({"Effect": "Allow", "Action": [], "Resource": "*"}, "non-empty list of strings"),
        (
            allow("*", "*", Condition={"IpAddress": {"aws:SourceIp": "1"}}),
            "condition operator 'IpAddress' is not one this evaluator supports",
        ),
    ],
)
def test_what_it_cannot_evaluate_is_refused_when_loaded(statement: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        policy(statement)


def test_repeated_statement_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="statement ids repeat"):
        policy(allow("s3:GetObject", "*", "Same"), allow("s3:PutObject", "*", "Same"))


TEMPLATE = json.dumps(
    {"Version": "2012-10-17", "Statement": [allow("s3:GetObject", "arn:aws:s3:::${Bucket}/${Prefix}*")]}
)


def test_render_fills_every_placeholder_and_refuses_a_wrong_set() -> None:
    assert placeholders(TEMPLATE) == {"Bucket", "Prefix"}
    rendered = render(TEMPLATE, {"Bucket": "media", "Prefix": 'in/"q"/'})
    assert Policy(rendered).evaluate("s3:GetObject", 'arn:aws:s3:::media/in/"q"/a.mp4').allowed
    with pytest.raises(ValueError, match="no value for Prefix"):
        render(TEMPLATE, {"Bucket": "media"})
    with pytest.raises(ValueError, match="not in the template: Extra"):
        render(TEMPLATE, {"Bucket": "media", "Prefix": "", "Extra": "x"})


def test_a_policy_with_placeholders_left_is_refused() -> None:
    with pytest.raises(ValueError, match="still holds placeholders: Bucket, Prefix"):
        Policy(TEMPLATE)
    with pytest.raises(ValueError, match=r"still holds placeholders: aws:username"):
        Policy({"Statement": [allow("s3:GetObject", "arn:aws:s3:::home/${aws:username}/*")]})
