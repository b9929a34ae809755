"""`mediaembed emulate --iam-policy FILE`: the local Bedrock checks the stack's key pair against a rendered
policy, and a file it cannot use is one line, before anything starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from emulators.__main__ import serve
from emulators.iam_policy import Policy, render
from emulators.stack import start_local_stack

POLICY = Path(__file__).parents[2] / "deploy" / "iam-policy.json"
MARENGO_3_0 = "twelvelabs.marengo-embed-3-0-v1:0"


def rendered_for_the_stack() -> Policy:
    values = {
        "Region": "us-east-1",
        "AccountId": "123456789012",
        **{f"{name}Bucket": "media" for name in ("Media", "Output", "Lake", "Index")},
        **{f"{name}Prefix": "" for name in ("Media", "Output", "Lake", "Index")},
        "MediaQueue": "media-events",
    }
    return Policy(render(POLICY.read_text(), values))


def test_the_stacks_key_is_checked_against_the_policy() -> None:
    policy = rendered_for_the_stack().without(["EmbedQueries"])
    with start_local_stack(buckets=("media",), iam_policy=policy) as stack:
        env = stack.env()
        bedrock = boto3.session.Session().client(
            "bedrock-runtime",
            endpoint_url=env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        bedrock.list_async_invokes(maxResults=1)
        body = json.dumps({"inputType": "text", "text": {"inputText": "red circle"}})
        with pytest.raises(ClientError) as refused:
            bedrock.invoke_model(modelId=f"us.{MARENGO_3_0}", body=body)
        error = refused.value.response["Error"]
        assert error["Code"] == "AccessDeniedException"
        user = "arn:aws:iam::123456789012:user/mediaembed"
        assert error["Message"].startswith(f"User: {user} is not authorized to perform: bedrock:InvokeModel")


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (None, "No such file or directory"),
        ("{not json", "Expecting property name"),
        (POLICY.read_text(), "still holds placeholders: AccountId, IndexBucket"),
    ],
)
def test_a_policy_it_cannot_use_is_one_line(
    tmp_path: Path, capsys: Any, content: str | None, complaint: str
) -> None:
    file = tmp_path / "policy.json"
    if content is not None:
        file.write_text(content)
    assert serve(["--iam-policy", str(file), "--workdir", str(tmp_path / "w")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"mediaembed emulate: --iam-policy {file}: ") and line.endswith(": fix the file")
    assert complaint in line
