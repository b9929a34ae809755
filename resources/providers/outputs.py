"""Reading a provider's result document from S3 into JSON, with the neutral output errors.

Bedrock writes `output.json` itself; the TwelveLabs provider keeps its sync answers the same way. Either
way a document that is gone after it was written, or that is not JSON, fails the job (MarengoOutputError);
a read that fails for any other reason may clear up, so the job stays open (OutputUnavailable).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from resources.providers.errors import MarengoOutputError, OutputUnavailable
from resources.storage.s3_storage import S3Storage, S3Uri

# A finished job's output that is gone is gone for good; any other read error may clear up.
OUTPUT_GONE_ERRORS = {"NoSuchKey", "404", "NotFound"}


def read_output_json(storage: S3Storage, location: S3Uri, written_when: str) -> Any:
    """The parsed document at `location`; `written_when` says in the error why it should be there (e.g.
    "the job completed")."""
    try:
        raw = storage.get_client().get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in OUTPUT_GONE_ERRORS:
            raise MarengoOutputError(f"{location} is gone ({code}) although {written_when}") from error
        raise OutputUnavailable(f"cannot read {location}: {code}") from error
    except BotoCoreError as error:
        raise OutputUnavailable(f"cannot read {location}: {error}") from error
    try:
        return json.loads(raw)
    except UnicodeDecodeError as error:
        raise MarengoOutputError(
            f"{location} is not UTF-8 text: {error.reason} at byte {error.start}"
        ) from error
    except json.JSONDecodeError as error:
        raise MarengoOutputError(f"{location} is not JSON: {error}") from error
    except RecursionError as error:
        raise MarengoOutputError(f"{location} is nested too deeply to be Marengo output") from error
