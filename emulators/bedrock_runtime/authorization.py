"""The optional IAM mode: each request's actions and resources checked against its caller's policy.

Off unless a caller (an access key) is given an `Identity`; a key without one is the account's own and may
do anything, as before. With one, every operation first asks for what AWS documents it needs, and a
request its policy does not allow is refused with Bedrock's AccessDeniedException (HTTP 403,
`x-amzn-ErrorType: AccessDeniedException:`, AWS's "User: ... is not authorized to perform: ..." message).

What each operation asks for, and where that comes from:
- InvokeModel: `bedrock:InvokeModel` on the model the request names (a foundation model, or an inference
  profile); through a profile, also on the foundation model in every region the profile may route to (the
  Bedrock guide's inference-profile prerequisites: granting the profile alone is refused). The emulator
  takes a geographic profile's regions to be the Bedrock regions of its geography it knows
  (models.PEGASUS_REGIONS), and a global profile's foundation model to carry no region, as AWS names it.
- StartAsyncInvoke: the API reference says it "requires permission for the bedrock:InvokeModel action";
  the Bedrock guide grants that on the foundation model and on the account's `async-invoke/*` resources,
  and policies commonly name `bedrock:StartAsyncInvoke` too. The emulator asks for both actions on both
  resources (the foundation model, and the invocation it is about to create), so a policy it accepts
  passes either reading.
- GetAsyncInvoke: `bedrock:GetAsyncInvoke` on the invocation's ARN. ListAsyncInvokes:
  `bedrock:ListAsyncInvokes`, which has no resource-level permissions (the resource is `*`).
- S3 as Bedrock reaches it for the caller: StartAsyncInvoke takes no service role, so Bedrock reads the
  media and writes the results with the caller's permissions. The emulator asks the caller's policy for
  `s3:GetObject` on an S3 media object (StartAsyncInvoke, and InvokeModel with an `s3Location`) and for
  `s3:PutObject` on the `output.json` and `manifest.json` it will write, and refuses the request up front.
  (AWS does not document when a missing S3 permission is reported; refusing at the request is the choice
  here, and a client must treat either as a set-up problem.)
"""

from __future__ import annotations

from dataclasses import dataclass

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.errors import ServiceError
from emulators.bedrock_runtime.models import GEOGRAPHIES, PEGASUS_REGIONS
from emulators.iam_policy import Policy

# The prefixes of the system inference profiles: geographic, and the global one.
PROFILE_PREFIXES: tuple[str, ...] = ("global.", *GEOGRAPHIES)
# Where the caller's access key is kept on a request once its signature has been verified.
CALLER_KEY = "mediaembed.bedrock.access_key"


@dataclass(frozen=True)
class Identity:
    """An IAM principal (`arn`, e.g. arn:aws:iam::123456789012:user/pipeline) and the policy it holds."""

    arn: str
    policy: Policy


@dataclass(frozen=True)
class IamCheck:
    """One action on one resource asked of a caller's policy, and the answer."""

    access_key: str
    action: str
    resource: str
    allowed: bool


def not_authorized(principal: str, action: str, resource: str, explicit: bool) -> ServiceError:
    """AWS's AccessDenied wording for an identity-based policy that does not allow the request."""
    why = (
        "with an explicit deny in an identity-based policy"
        if explicit
        else f"because no identity-based policy allows the {action} action"
    )
    return errors.access_denied(
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} {why}"
    )


def foundation_model_arn(region: str, model_id: str) -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def destination_regions(profile: str, region: str) -> tuple[str, ...]:
    """The regions a system profile may send a request from `region` to ("" for the global profile)."""
    if profile == "global.":
        return ("",)
    geography = GEOGRAPHIES[profile]
    known = tuple(r for r in PEGASUS_REGIONS if r.startswith(geography))
    return known if region in known else (region, *known)


def invoke_model_resources(model_id: str, region: str, account: str) -> list[str]:
    """What `bedrock:InvokeModel` is asked on for a request naming `model_id` (an id or an ARN)."""
    if model_id.startswith("arn:"):
        kind, _, name = model_id.split(":", 5)[-1].partition("/")
        if kind != "inference-profile":
            return [model_id]
        profile_id, resources = name, [model_id]
    else:
        profile_id, resources = model_id, []
    profile = next((p for p in PROFILE_PREFIXES if profile_id.startswith(p)), None)
    if profile is None:
        return [foundation_model_arn(region, model_id)]
    if not resources:
        resources.append(f"arn:aws:bedrock:{region}:{account}:inference-profile/{profile_id}")
    base = profile_id[len(profile) :]
    return resources + [foundation_model_arn(r, base) for r in destination_regions(profile, region)]


def async_model_resources(model_id: str, region: str) -> str:
    """The foundation model StartAsyncInvoke runs (it takes a base id, or that model's ARN)."""
    return model_id if model_id.startswith("arn:") else foundation_model_arn(region, model_id)


def s3_object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"
