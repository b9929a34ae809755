"""Marengo's media admission: a source held to its model version's documented limits (size before the
body is read, then length), as InvokeModel and StartAsyncInvoke both do before any work."""

from __future__ import annotations

import contextlib

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.limits import GB, MB, MarengoLimits
from emulators.bedrock_runtime.marengo_body import EmbedRequest
from emulators.bedrock_runtime.media_access import MediaAccess
from emulators.media_analysis import MediaError, MediaKind, container_duration, probe_media


def in_units(size: int) -> str:
    """A documented limit as the model pages write it: 5 MB, 36 MB, 2 GB."""
    return f"{size / GB:g} GB" if size >= GB else f"{size / MB:g} MB"


def admit_media(
    media: MediaAccess, limits: MarengoLimits, version: str, req: EmbedRequest, *, refuse_undecodable: bool
) -> bytes | None:
    """Hold the media to the model's documented limits, then read it; media that cannot be decoded is
    refused here (a ValidationException naming it) unless `refuse_undecodable` is False: the job is
    then accepted and fails when it runs."""
    ref = req.media
    if ref is None:
        return None
    kind: MediaKind = "image" if req.input_type in ("image", "text_image") else req.input_type  # type: ignore[assignment]
    where = ref.uri or "mediaSource.base64String"
    marengo = f"Marengo {version}"

    def check_size(size: int) -> None:
        if kind == "image" and size > limits.image_bytes:
            raise errors.validation(
                f"The image at {where} is {size} bytes; {marengo} takes images of at most "
                f"{limits.image_bytes} bytes ({in_units(limits.image_bytes)})."
            )
        if kind != "image" and ref.data is not None and size > limits.base64_bytes:
            raise errors.validation(
                f"The {kind} in {where} is {size} bytes decoded; {marengo} takes base64 media of at "
                f"most {limits.base64_bytes} bytes ({in_units(limits.base64_bytes)}): send it by "
                "s3Location."
            )
        if kind != "image" and ref.data is None and size > limits.s3_media_bytes:
            raise errors.validation(
                f"The {kind} at {where} is {size} bytes; {marengo} reads {kind} files of at most "
                f"{limits.s3_media_bytes} bytes ({in_units(limits.s3_media_bytes)}) from S3."
            )

    data = media.read(ref, check_size)
    seconds: float | None = None
    if refuse_undecodable:
        try:
            seconds = probe_media(data, kind).declared_sec
        except MediaError as exc:
            raise errors.validation(f"Unable to read media at {where}: {exc}") from exc
    elif kind != "image":
        with contextlib.suppress(MediaError):  # unreadable: the job is accepted and fails when it runs
            seconds = container_duration(data)
    if kind != "image" and seconds is not None and seconds > limits.media_sec:
        raise errors.validation(
            f"The {kind} at {where} is {seconds:.0f} s long; {marengo} takes {kind} of at most "
            f"{limits.media_sec:.0f} s ({limits.media_sec / 3600:g} h): send a shorter {kind}."
        )
    return data
