"""The assets operations (`/assets`: create by URL or direct upload, retrieve, list, delete) and the library
of assets they keep, whose media embeds name by `asset_id` (kept on disk with a workdir: SQLite for the
records, one file per asset's bytes)."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from werkzeug.wrappers import Request, Response

from emulators.background import BackgroundWork
from emulators.bedrock_runtime.state import InvocationStore
from emulators.http_base import Route, json_response
from emulators.twelvelabs_api.assets import ASSET_TYPES, Asset, filename_of, parse_upload, read_upload
from emulators.twelvelabs_api.errors import invalid, not_found
from emulators.twelvelabs_api.listing import listed, page
from emulators.twelvelabs_api.media_urls import fetch_url
from emulators.twelvelabs_api.requests import Source
from emulators.twelvelabs_api.wire import rfc3339

ASSETS_DB_NAME = "twelvelabs-assets.sqlite3"
ASSET_FILES = "twelvelabs-assets"


class AssetSettings(Protocol):
    """What the assets operations read from the emulator at each call (plain attributes a test may change)."""

    latency_sec: float
    s3_credentials: dict[str, str]
    clock: Callable[[], datetime]


class AssetLibrary:
    """The account's assets and their bytes, guarded by the emulator's `lock`."""

    def __init__(
        self,
        settings: AssetSettings,
        work: BackgroundWork,
        lock: threading.RLock,
        workdir: Path | str | None,
    ) -> None:
        self._settings = settings
        self._work = work
        self._lock = lock
        self._assets: dict[str, Asset] = {}
        self._data: dict[str, bytes] = {}
        self._store = InvocationStore(Path(workdir), ASSETS_DB_NAME) if workdir is not None else None
        self._dir = Path(workdir) / ASSET_FILES if workdir is not None else None
        if self._store is not None and self._dir is not None:
            for doc in self._store.load()[0]:
                asset = Asset.from_document(doc)
                self._assets[asset.asset_id] = asset
                blob = self._dir / asset.asset_id
                if blob.exists():
                    self._data[asset.asset_id] = blob.read_bytes()

    def routes(self) -> list[Route]:
        return [
            Route("/assets", "POST", "CreateAsset", self.create),
            Route("/assets", "GET", "ListAssets", self.list),
            Route("/assets/<asset_id>", "GET", "RetrieveAsset", self.retrieve),
            Route("/assets/<asset_id>", "DELETE", "DeleteAsset", self.delete),
        ]

    def snapshot(self) -> Mapping[str, Asset]:
        with self._lock:
            return MappingProxyType({k: copy.deepcopy(a) for k, a in self._assets.items()})

    def resume(self) -> None:
        """Assets still processing when an earlier emulator stopped finish now (after the latency)."""
        with self._lock:
            for asset in [a for a in self._assets.values() if a.status == "processing"]:
                self._work.later(self._settings.latency_sec, self._finish, asset.asset_id)

    def media(self, source: Source) -> bytes:
        """The bytes of a ready asset of a kind the input can take (an audio input also takes a video)."""
        asset_id = source.asset_id or ""
        with self._lock:
            asset, data = self._assets.get(asset_id), self._data.get(asset_id)
        if asset is None or data is None:
            raise not_found(asset_id, "assets")
        if asset.status != "ready" or asset.facts is None:
            raise invalid(
                f"{source.path}: asset {asset_id} is {asset.status}, not ready; retrieve it until it is ready"
            )
        kinds = {"audio": ("audio", "video")}.get(source.media_type, (source.media_type,))
        if asset.facts.kind not in kinds:
            raise invalid(f"{source.path}: asset {asset_id} is {asset.facts.kind}, not {source.media_type}")
        return data

    # --- operations -----------------------------------------------------------------------------------------

    def create(self, request: Request) -> Response:
        """`POST /assets`: the file is fetched (URL) or read (direct) and checked now; with latency the
        asset stays `processing` that long, as the platform's asynchronous validation does."""
        if request.mimetype != "multipart/form-data":
            raise invalid("creating an asset takes multipart/form-data")
        files = {name: (f.filename, f.read()) for name, f in request.files.items()}
        upload = parse_upload(request.form.to_dict(), files)
        settings = self._settings
        if upload.file is not None:
            data = upload.file
        else:
            data = fetch_url(upload.url or "", "url", settings.s3_credentials, settings.clock())
        asset = Asset(
            asset_id=uuid.uuid4().hex[:24],
            method=upload.method,
            filename=filename_of(upload),
            created_at=datetime.now(UTC),
            url=upload.url,
            user_metadata=upload.user_metadata,
        )
        try:
            asset.facts = read_upload(data, asset.filename, upload.method)
        except ValueError as exc:
            asset.error = f"The file could not be processed: {exc}"
        answer = asset.public(rfc3339)  # the documented answer: the asset in the processing status
        with self._lock:
            self._assets[asset.asset_id] = asset
            self._data[asset.asset_id] = data
            self._save(asset, data)
        self._work.later(settings.latency_sec, self._finish, asset.asset_id)
        return json_response(answer, 201)

    def retrieve(self, request: Request, asset_id: str) -> Response:
        with self._lock:
            return json_response(self._known(asset_id).detail(rfc3339))

    def delete(self, request: Request, asset_id: str) -> Response:
        force = request.args.get("force")
        if force is not None and force.lower() not in ("true", "false"):
            raise invalid(f"force must be true or false, not {force!r}")
        with self._lock:
            self._known(asset_id)  # nothing is indexed here, so no reference blocks the deletion
            del self._assets[asset_id]
            self._data.pop(asset_id, None)
            if self._store is not None and self._dir is not None:
                self._store.delete(asset_id)
                (self._dir / asset_id).unlink(missing_ok=True)
        return Response(status=204)

    def list(self, request: Request) -> Response:
        args = request.args
        ids = set(listed(args.getlist("asset_ids")))
        types = set(listed(args.getlist("asset_types")))
        unknown = sorted(types - set(ASSET_TYPES))
        if unknown:
            raise invalid(f"asset_types {', '.join(unknown)} not one of {', '.join(ASSET_TYPES)}")
        name = (args.get("filename") or "").lower()
        with self._lock:
            chosen = [
                a
                for a in self._assets.values()
                if (not ids or a.asset_id in ids)
                and (not types or (a.facts is not None and a.facts.kind in types))
                and name in a.filename.lower()
            ]
            chosen.sort(key=lambda a: a.created_at, reverse=True)
            return page(args, [a.detail(rfc3339) for a in chosen])

    # --- state ----------------------------------------------------------------------------------------------

    def _known(self, asset_id: str) -> Asset:
        asset = self._assets.get(asset_id)
        if asset is None:
            raise not_found(asset_id, "assets")
        return asset

    def _finish(self, asset_id: str) -> None:
        with self._lock:
            asset = self._assets.get(asset_id)
            if asset is None or asset.status != "processing":
                return
            asset.status = "failed" if asset.error is not None else "ready"
            asset.size = len(self._data.get(asset_id, b""))
            self._save(asset)

    def _save(self, asset: Asset, data: bytes | None = None) -> None:
        if self._store is not None and self._dir is not None:
            if data is not None:
                self._dir.mkdir(parents=True, exist_ok=True)
                (self._dir / asset.asset_id).write_bytes(data)
            self._store.save(asset.asset_id, "", asset.document())
