"""One embed task's record, in the shapes the API answers with and the document it is kept as."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emulators.twelvelabs_api.requests import TlRequest, parse_v2
from emulators.twelvelabs_api.wire import parse_time, rfc3339


@dataclass
class Task:
    """One embed task; mutable inside the emulator, handed to tests only as copies."""

    task_id: str
    body: dict[str, Any]
    request: TlRequest
    created_at: datetime
    updated_at: datetime
    status: str = "processing"
    data: list[dict[str, Any]] | None = None
    error: str | None = None
    duration: float = 0.0
    inject_failure: bool = False
    # The media as fetched when the task was created (kept in memory only: after a restart over a workdir
    # the sources are fetched again).
    media: list[bytes] | None = None

    def listed(self) -> dict[str, Any]:
        """`MediaEmbeddingTask`, as task listings return it."""
        return {
            "_id": self.task_id,
            "model_name": self.request.model_name,
            "status": self.status,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        }

    def retrieved(self) -> dict[str, Any]:
        """`EmbeddingTaskResponse`."""
        req = self.request
        source = req.source
        metadata: dict[str, Any] = {
            "input_type": req.input_type,
            "input_url": source.url if source else None,
            "embedding_options": list(req.options),
            "embedding_scopes": list(req.scopes),
            "duration": self.duration,
            "start_offset_sec": req.start_sec,
        }
        if req.end_sec is not None:
            metadata["end_offset_sec"] = req.end_sec
        if req.dimension is not None:
            metadata["embedding_dimension"] = req.dimension
        out: dict[str, Any] = {
            **self.listed(),
            "data": self.data if self.status == "ready" else None,
            "metadata": metadata,
        }
        if self.status == "failed":
            out["error"] = {"message": self.error or "failed"}
        return out

    def document(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "body": self.body,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "status": self.status,
            "data": self.data,
            "error": self.error,
            "duration": self.duration,
            "inject_failure": self.inject_failure,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Task:
        return cls(
            task_id=doc["task_id"],
            body=doc["body"],
            request=parse_v2(doc["body"], task=True),
            created_at=parse_time(doc["created_at"], "created_at"),
            updated_at=parse_time(doc["updated_at"], "updated_at"),
            status=doc["status"],
            data=doc["data"],
            error=doc["error"],
            duration=doc["duration"],
            inject_failure=doc["inject_failure"],
        )
