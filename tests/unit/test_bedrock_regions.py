"""BedrockMarengo's same-region check: a bucket's region, asked once, and the line it refuses with."""

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from pydantic import PrivateAttr

from resources.providers.bedrock.marengo import BedrockMarengo
from resources.storage.s3_storage import S3Storage


class Locations:
    """An S3 client that answers GetBucketLocation from a table and counts the calls."""

    def __init__(self, constraints: dict[str, Any]) -> None:
        self.constraints = constraints
        self.asked: list[str] = []

    def get_bucket_location(self, Bucket: str) -> dict[str, Any]:
        self.asked.append(Bucket)
        answer = self.constraints[Bucket]
        if isinstance(answer, Exception):
            raise answer
        return {} if answer is ... else {"LocationConstraint": answer}


DENIED = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetBucketLocation")


class StorageAskingLocations(S3Storage):
    """The S3 resource whose one client is a `Locations` (its public `get_client` overridden)."""

    _locations: Locations = PrivateAttr()

    def __init__(self, locations: Locations, **fields: Any) -> None:
        super().__init__(**fields)
        self._locations = locations

    def get_client(self) -> Locations:
        return self._locations


def provider(
    constraints: dict[str, Any], output: str = "s3://out/marengo"
) -> tuple[BedrockMarengo, Locations]:
    client = Locations(constraints)
    storage = StorageAskingLocations(client, region_name="us-east-1")
    return BedrockMarengo(region_name="us-east-1", output_s3_uri=output, storage=storage), client


@pytest.mark.parametrize(
    ("constraint", "region"),
    [
        (None, "us-east-1"),
        ("", "us-east-1"),
        (..., "us-east-1"),
        ("EU", "eu-west-1"),
        ("eu-west-1", "eu-west-1"),
    ],
)
def test_no_location_constraint_means_us_east_1(constraint: Any, region: str) -> None:
    bedrock, _ = provider({"b": constraint})
    assert bedrock.bucket_region("b") == region


def test_each_bucket_is_asked_once() -> None:
    bedrock, client = provider({"out": "eu-west-1", "m": None, "far": "sa-east-1"})
    for _ in range(3):
        bedrock.setup_problem()
        bedrock.unusable_buckets(["m", "far"])
    assert sorted(client.asked) == ["far", "m", "out"]


def test_an_output_bucket_elsewhere_is_one_line_naming_both_regions_and_what_to_do() -> None:
    bedrock, _ = provider({"out": "eu-west-1"})
    assert bedrock.setup_problem() == (
        "the async output bucket out is in eu-west-1, but Marengo runs in us-east-1 and Bedrock writes only "
        "to buckets in the model's region: point MEDIAEMBED_ASYNC_OUTPUT_URI at a bucket in us-east-1, or "
        "set AWS_REGION to eu-west-1 (Bedrock offers Marengo there too)"
    )


def test_only_media_buckets_elsewhere_are_refused_and_a_region_without_marengo_is_not_suggested() -> None:
    bedrock, _ = provider({"out": None, "here": None, "far": "sa-east-1"})
    assert bedrock.setup_problem() is None
    assert bedrock.unusable_buckets(["here", "far"]) == {
        "far": "media bucket far is in sa-east-1, but Marengo runs in us-east-1 and Bedrock reads only "
        "buckets in the model's region: move or replicate the objects to a bucket in us-east-1"
    }


def test_a_bucket_whose_region_s3_will_not_tell_is_left_to_bedrock() -> None:
    unreachable = EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    bedrock, _ = provider({"out": DENIED, "m": unreachable})
    assert bedrock.setup_problem() is None
    assert bedrock.unusable_buckets(["m"]) == {}
