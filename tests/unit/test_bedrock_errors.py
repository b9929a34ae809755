"""How Bedrock's errors are read: a refusal about one object vs the set-up; an invocation it does not know."""

import pytest

from resources.providers.bedrock.marengo import invocation_not_found, refusal_is_object_specific

URI = "s3://media/output/clip.mp4"  # "output" in the key must not read as an output-bucket problem
ARN = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/abcdef012345"


@pytest.mark.parametrize(
    ("code", "message", "object_specific"),
    [
        ("ValidationException", f"Unable to read media at {URI}: decode error: Invalid data", True),
        (
            "ValidationException",
            f"The provided S3 object {URI} does not exist or is not accessible (NoSuchKey).",
            True,
        ),
        (
            "ValidationException",
            "Malformed input request: #/video/startSec: -1 is not greater or equal to 0",
            True,
        ),
        (
            "ValidationException",
            "The output S3 bucket no-such-bucket does not exist or is not accessible.",
            False,
        ),
        (
            "ValidationException",
            f"The provided S3 object {URI} does not exist or is not accessible (AccessDenied).",
            False,
        ),
        ("ValidationException", "The S3 bucket must be in the same region as the model.", False),
        ("ValidationException", "The provided model identifier is invalid.", False),
        ("AccessDeniedException", "You don't have access to the model with the specified model ID.", False),
        ("ResourceNotFoundException", "Model not found.", False),
    ],
)
def test_only_validation_refusals_about_the_object_are_object_specific(
    code: str, message: str, object_specific: bool
) -> None:
    assert refusal_is_object_specific(code, message, URI) is object_specific


@pytest.mark.parametrize(
    ("code", "arn", "region", "lost"),
    [
        ("ValidationException", ARN, "us-east-1", True),  # what the emulator (and the model) answer
        ("ResourceNotFoundException", ARN, "us-east-1", True),
        ("ValidationException", ARN, "eu-west-1", False),  # the configuration moved region: not lost
        (
            "ValidationException",
            "arn:aws:bedrock:us-east-1:123456789012:async-invoke/BAD",
            "us-east-1",
            False,
        ),
        ("AccessDeniedException", ARN, "us-east-1", False),
        ("ThrottlingException", ARN, "us-east-1", False),
        ("InternalServerException", ARN, "us-east-1", False),
    ],
)
def test_an_invocation_is_lost_only_when_bedrock_says_it_does_not_know_it(
    code: str, arn: str, region: str, lost: bool
) -> None:
    assert invocation_not_found(code, arn, region) is lost
