"""A media source's bytes, however the request gives it: inline (base64), by asset id, or by URL."""

from __future__ import annotations

from emulators.twelvelabs_api.assets_api import AssetLibrary, AssetSettings
from emulators.twelvelabs_api.media_urls import fetch_url
from emulators.twelvelabs_api.requests import Source


class SourceMedia:
    def __init__(self, settings: AssetSettings, assets: AssetLibrary) -> None:
        self._settings = settings
        self._assets = assets

    def read(self, source: Source) -> bytes:
        if source.data is not None:
            return source.data
        if source.asset_id is not None:
            return self._assets.media(source)
        return fetch_url(source.url or "", source.path, self._settings.s3_credentials, self._settings.clock())
