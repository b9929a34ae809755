"""The account's async invocations: each one's record, and the book of them all (by ARN and by client token,
kept on disk with a workdir so a restarted emulator forgets no job)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.marengo_body import EmbedRequest, parse_body
from emulators.bedrock_runtime.models import ResolvedModel, resolve_model
from emulators.bedrock_runtime.state import InvocationStore


def iso(ts: datetime) -> str:
    """Bedrock's timestamp wire format: ISO-8601 UTC with microseconds, e.g. 2026-11-23T10:00:00.123000Z."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Invocation:
    """One async invocation; mutable inside the emulator, handed to tests only as copies."""

    arn: str
    model: ResolvedModel
    client_request_token: str
    fingerprint: str
    request: EmbedRequest
    output_data_config: dict[str, Any]
    submit_time: datetime
    status: str = "InProgress"
    failure_message: str | None = None
    last_modified_time: datetime | None = None
    end_time: datetime | None = None
    inject_failure: bool = False
    output_keys: tuple[str, ...] = field(default_factory=tuple)

    @property
    def invocation_id(self) -> str:
        return self.arn[-12:]

    @property
    def output_uri(self) -> str:
        return str(self.output_data_config["s3OutputDataConfig"]["s3Uri"]).rstrip("/")

    def document(self) -> dict[str, Any]:
        """Everything needed to rebuild the invocation after a restart (the request is in the fingerprint)."""
        return {
            "arn": self.arn,
            "model_id": self.model.requested,
            "client_request_token": self.client_request_token,
            "fingerprint": self.fingerprint,
            "output_data_config": self.output_data_config,
            "submit_time": iso(self.submit_time),
            "status": self.status,
            "failure_message": self.failure_message,
            "last_modified_time": iso(self.last_modified_time) if self.last_modified_time else None,
            "end_time": iso(self.end_time) if self.end_time else None,
            "inject_failure": self.inject_failure,
            "output_keys": list(self.output_keys),
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any], region: str) -> Invocation:
        model = resolve_model(doc["model_id"], sync=False, region=region)
        model_input = json.loads(doc["fingerprint"])["modelInput"]

        def when(name: str) -> datetime | None:
            return datetime.fromisoformat(doc[name]) if doc.get(name) else None

        return cls(
            arn=doc["arn"],
            model=model,
            client_request_token=doc["client_request_token"],
            fingerprint=doc["fingerprint"],
            request=parse_body(model.version, model_input, sync=False),
            output_data_config=doc["output_data_config"],
            submit_time=datetime.fromisoformat(doc["submit_time"]),
            status=doc["status"],
            failure_message=doc.get("failure_message"),
            last_modified_time=when("last_modified_time"),
            end_time=when("end_time"),
            inject_failure=bool(doc.get("inject_failure")),
            output_keys=tuple(doc.get("output_keys") or ()),
        )

    def summary(self, region: str) -> dict[str, Any]:
        """The GetAsyncInvoke / AsyncInvokeSummary members, in wire form."""
        out: dict[str, Any] = {
            "invocationArn": self.arn,
            "modelArn": self.model.arn(region),
            "clientRequestToken": self.client_request_token,
            "status": self.status,
            "submitTime": iso(self.submit_time),
            "lastModifiedTime": iso(self.last_modified_time or self.submit_time),
            "outputDataConfig": self.output_data_config,
        }
        if self.failure_message is not None:
            out["failureMessage"] = self.failure_message
        if self.end_time is not None:
            out["endTime"] = iso(self.end_time)
        return out


class InvocationBook:
    """Every invocation of the account, guarded by the emulator's lock (`lock`; `idle` is notified
    whenever one ends or is forgotten). With a workdir each change is stored before it is visible."""

    def __init__(self, lock: threading.RLock, region: str, workdir: Path | str | None) -> None:
        self.lock = lock
        self.idle = threading.Condition(lock)
        self._invocations: dict[str, Invocation] = {}
        self._by_token: dict[str, Invocation] = {}
        self._created = 0
        self._store = InvocationStore(Path(workdir)) if workdir is not None else None
        if self._store is not None:
            documents, created = self._store.load()
            for doc in documents:
                inv = Invocation.from_document(doc, region)
                self._invocations[inv.arn] = inv
                self._by_token[inv.client_request_token] = inv
            self._created = len(documents) if created is None else created

    @property
    def kept(self) -> bool:
        """Whether invocations outlive the emulator (it has a workdir)."""
        return self._store is not None

    @property
    def created(self) -> int:
        """New invocations accepted (idempotent replays not counted)."""
        with self.lock:
            return self._created

    def get(self, arn: str) -> Invocation | None:
        with self.lock:
            return self._invocations.get(arn)

    def all(self) -> list[Invocation]:
        with self.lock:
            return list(self._invocations.values())

    def snapshot(self) -> Mapping[str, Invocation]:
        """A read-only snapshot ARN -> Invocation (copies: mutating them changes nothing)."""
        with self.lock:
            return MappingProxyType({arn: copy.deepcopy(inv) for arn, inv in self._invocations.items()})

    def replay(self, token: str, fingerprint: str) -> str | None:
        """The ARN an earlier call with this client token got; ConflictException if its request differed."""
        with self.lock:
            existing = self._by_token.get(token)
        if existing is None:
            return None
        if existing.fingerprint != fingerprint:
            raise errors.conflict(
                f"The clientRequestToken {token} was already used with different request parameters."
            )
        return existing.arn

    def add(self, inv: Invocation) -> None:
        """A new invocation: durable before its ARN is handed out."""
        with self.lock:
            self._invocations[inv.arn] = inv
            self._by_token[inv.client_request_token] = inv
            self._created += 1
            if self._store is not None:
                self._store.save(inv.arn, inv.client_request_token, inv.document(), created=self._created)

    def end(
        self, inv: Invocation, status: str, failure: str | None, keys: tuple[str, ...], now: datetime
    ) -> None:
        """Publish how an invocation ended (nothing if it was forgotten meanwhile)."""
        with self.idle:
            if self._invocations.get(inv.arn) is not inv:
                return  # forgotten while it ran
            inv.status, inv.failure_message = status, failure
            inv.last_modified_time = inv.end_time = now
            inv.output_keys = keys
            if self._store is not None:
                self._store.save(inv.arn, inv.client_request_token, inv.document())
            self.idle.notify_all()

    def forget(self, arn: str) -> None:
        """Lose an invocation, as a provider that lost its state would: unknown ARN, unknown token."""
        with self.idle:
            inv = self._invocations.pop(arn)
            self._by_token.pop(inv.client_request_token, None)
            if self._store is not None:
                self._store.delete(arn)
            self.idle.notify_all()

    def in_progress(self) -> int:
        with self.lock:
            return sum(1 for inv in self._invocations.values() if inv.status == "InProgress")

    def in_flight(self, base_id: str) -> int:
        """InProgress invocations of one base model (what the concurrency quota counts)."""
        with self.lock:
            return sum(
                1
                for inv in self._invocations.values()
                if inv.status == "InProgress" and inv.model.base_id == base_id
            )

    def wait_until_idle(self, timeout: float) -> None:
        """Block until no invocation is InProgress; TimeoutError past `timeout` seconds."""
        with self.idle:
            if not self.idle.wait_for(lambda: self.in_progress() == 0, timeout=timeout):
                raise TimeoutError(f"{self.in_progress()} invocation(s) still InProgress after {timeout:g}s")
