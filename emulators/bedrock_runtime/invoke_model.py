"""InvokeModel: a Marengo embedding answered at once, or a Pegasus call (pegasus.py), by the model id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from werkzeug.wrappers import Request, Response

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.authorization import invoke_model_resources, s3_object_arn
from emulators.bedrock_runtime.embedding import embed
from emulators.bedrock_runtime.limits import MarengoLimits, body_too_large
from emulators.bedrock_runtime.marengo_body import parse_body
from emulators.bedrock_runtime.marengo_media import admit_media
from emulators.bedrock_runtime.media_access import MediaAccess
from emulators.bedrock_runtime.models import pegasus_base, resolve_model
from emulators.bedrock_runtime.pegasus import PegasusApi
from emulators.bedrock_runtime.shapes import check_input
from emulators.bedrock_runtime.wire import body_json
from emulators.http_base import Route, json_response
from emulators.media_analysis import MediaError


class InvokeSettings(Protocol):
    """What InvokeModel reads from the emulator at every call (plain attributes a test may change)."""

    region: str
    account_id: str
    max_invoke_body_bytes: int
    marengo_limits: dict[str, MarengoLimits]

    def authorize(self, request: Request, checks: Sequence[tuple[str, str]]) -> None: ...


class InvokeModelApi:
    def __init__(self, settings: InvokeSettings, media: MediaAccess, pegasus: PegasusApi) -> None:
        self._settings = settings
        self._media = media
        self._pegasus = pegasus

    def routes(self) -> list[Route]:
        return [Route("/model/<path:model_id>/invoke", "POST", "InvokeModel", self.invoke)]

    def invoke(self, request: Request, model_id: str) -> Response:
        settings = self._settings
        check_input("InvokeModel", {"modelId": model_id})
        resources = invoke_model_resources(model_id, settings.region, settings.account_id)
        settings.authorize(request, [("bedrock:InvokeModel", r) for r in resources])
        size = len(request.get_data(cache=True))
        if size > settings.max_invoke_body_bytes:
            raise errors.validation(body_too_large(size, settings.max_invoke_body_bytes))
        if pegasus_base(model_id) is not None:
            return self._pegasus.invoke(request, model_id)
        model = resolve_model(model_id, sync=True, region=settings.region)
        req = parse_body(model.version, body_json(request), sync=True)
        if req.media is not None and req.media.uri is not None:  # Bedrock reads it as the caller
            settings.authorize(request, [("s3:GetObject", s3_object_arn(*req.media.bucket_key))])
        self._media.check_access(req.media)
        limits = settings.marengo_limits[model.version]
        data = admit_media(self._media, limits, model.version, req, refuse_undecodable=True)
        try:
            result = embed(req, data)
        except MediaError as exc:
            raise errors.validation(f"Unable to read media: {exc}") from exc
        return json_response({"data": result})
