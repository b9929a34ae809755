"""Which model version serves search: a small record in the lake, changed only by a cut-over, a rollback or
a retirement, never by editing code.

Every change is a new JSON record `serving/<family>/<sequence>.json`, created only if that sequence does not
exist yet (`Location.create_if_absent`: `If-None-Match: *` on S3, an exclusive hard link on a local disk).
The newest record is the pointer; the older ones are its history (who, when, from, to). Two cut-overs
racing for the same sequence cannot both win: the loser is told which change won (who, when, which run),
so no change is ever lost or based on a stale pointer.
Reading needs no Dagster: search reads the same record with a plain boto3 client or from the disk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from resources.providers.marengo_models import MARENGO_MODELS, marengo_model
from resources.storage.location import Location

FAMILY = "marengo"
INITIAL_SERVING_ENV = "MEDIAEMBED_SERVING_VERSION"
DEFAULT_INITIAL_SERVING = "marengo-3.0"
SERVING_FOLDER = "serving"

Action = Literal["initial", "cut_over", "rollback", "retire"]


class ServingChangeRefused(ValueError):
    """A cut-over, rollback or retirement that would leave search without a consistent version; `str()` is
    one line that says why and what to do."""


class ServingConflict(ServingChangeRefused):
    """Another change was recorded between reading the pointer and writing the new one; `winner` is that
    change's record (None if it could not be read back)."""

    def __init__(self, message: str, winner: ServingState | None) -> None:
        super().__init__(message)
        self.winner = winner


class AlreadyServing(ServingChangeRefused):
    """A cut-over to the version that serves already; `state` is the record that made it serve."""

    def __init__(self, message: str, state: ServingState) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True)
class ServingState:
    """The pointer of one model family: what serves now, what served before, and how it got there."""

    family: str
    serving: str
    previous: str | None = None
    since: datetime | None = None  # None: no change recorded yet (the configured initial version)
    action: Action = "initial"
    by: str = ""
    run_id: str = ""
    retired: tuple[str, ...] = ()
    sequence: int = 0  # 0: nothing recorded yet; the first change is sequence 1

    def record(self) -> dict[str, Any]:
        body = asdict(self)
        body["since"] = self.since.isoformat() if self.since else None
        body["retired"] = list(self.retired)
        return body

    @classmethod
    def from_record(cls, body: Mapping[str, Any]) -> ServingState:
        since = body.get("since")
        return cls(
            family=str(body["family"]),
            serving=str(body["serving"]),
            previous=body.get("previous"),
            since=datetime.fromisoformat(since) if since else None,
            action=body.get("action", "cut_over"),
            by=str(body.get("by", "")),
            run_id=str(body.get("run_id", "")),
            retired=tuple(body.get("retired") or ()),
            sequence=int(body["sequence"]),
        )

    def describe_change(self) -> str:
        """The change that made this record: 'cut over to marengo-3.0 by ana at <UTC time> (run r)'."""
        if self.action == "retire" and self.retired:
            what = f"retired {self.retired[-1]} ({self.serving} serving)"
        elif self.action == "rollback":
            what = f"rolled back to {self.serving}"
        else:
            what = f"cut over to {self.serving}"
        when = f" at {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        run = f" (run {self.run_id})" if self.run_id else ""
        return f"{what} by {self.by or 'someone unnamed'}{when}{run}"

    def describe(self) -> str:
        """One line for a person: what serves, since when and how, and what a rollback returns to."""
        if self.since is None:
            how = f"the initial version ({INITIAL_SERVING_ENV}); no cut-over recorded yet"
        else:
            verb = {"cut_over": "cut over", "rollback": "rolled back", "retire": "unchanged by a retirement"}
            by = f" by {self.by}" if self.by else ""
            how = f"since {self.since:%Y-%m-%d %H:%M:%S} UTC ({verb.get(self.action, self.action)}{by})"
        back = f"; rollback returns to {self.previous}" if self.previous else "; nothing to roll back to"
        retired = f"; retired: {', '.join(self.retired)}" if self.retired else ""
        return f"{self.family}: {self.serving} serves search, {how}{back}{retired}"


def initial_serving(setting: str | None = None) -> str:
    """The version a lake with no recorded change serves: the text of MEDIAEMBED_SERVING_VERSION
    (configuration, read until the first cut-over); unset or empty: the default."""
    key = (setting or "").strip() or DEFAULT_INITIAL_SERVING
    if key not in MARENGO_MODELS:
        raise ServingChangeRefused(
            f"{INITIAL_SERVING_ENV}={key!r} is not a Marengo version: "
            f"set it to one of {', '.join(MARENGO_MODELS)}"
        )
    return key


@dataclass(frozen=True)
class RecordFolder:
    """Where the records live (`serving/<family>/` in the lake): list their names, read one, create one only
    if it does not exist."""

    location: Location
    relative: str

    def names(self) -> list[str]:
        return self.location.list_names(self.relative, suffix=".json")

    def read(self, name: str) -> bytes:
        return self.location.read_bytes(f"{self.relative}/{name}")

    def create(self, name: str, body: bytes) -> bool:
        """Write `name` unless it exists; False when it already did (someone else won)."""
        return self.location.create_if_absent(f"{self.relative}/{name}", body)


def record_folder(lake: Location, family: str = FAMILY) -> RecordFolder:
    """The records of `family` in the lake at `lake`."""
    return RecordFolder(lake, f"{SERVING_FOLDER}/{family}")


@dataclass
class ServingVersions:
    """The serving pointer of one family, read fresh on every call (one listing and one small read)."""

    folder: RecordFolder
    family: str = FAMILY
    # MEDIAEMBED_SERVING_VERSION's text: what serves before the first recorded change.
    initial: str | None = None

    def history(self) -> list[ServingState]:
        return [ServingState.from_record(json.loads(self.folder.read(n))) for n in self.folder.names()]

    def current(self) -> ServingState:
        names = self.folder.names()
        if not names:
            return ServingState(family=self.family, serving=initial_serving(self.initial))
        return ServingState.from_record(json.loads(self.folder.read(names[-1])))

    def cut_over(self, to: str, by: str, run_id: str = "") -> ServingState:
        """Serve `to` from now on; the version serving until now becomes the rollback target."""
        marengo_model(to)  # an unknown key is refused by name
        now = self.current()
        if to == now.serving:
            raise AlreadyServing(f"{to} already serves search ({now.describe()})", now)
        if to in now.retired:
            raise ServingChangeRefused(
                f"{to} is retired: its tables may be gone; "
                f"re-embed it with a backfill of partition {to} first"
            )
        return self._write(now, replace(now, serving=to, previous=now.serving, action="cut_over"), by, run_id)

    def roll_back(self, by: str, run_id: str = "", to: str | None = None) -> ServingState:
        """One step back to the version that served before the last cut-over; no re-embedding. `to`: the
        version the caller means to return to, refused unless it is that one (the pointer moved since)."""
        now = self.current()
        if now.previous is None:
            raise ServingChangeRefused(f"nothing to roll back to: {now.describe()}")
        if to is not None and to != now.previous:
            raise ServingChangeRefused(
                f"not rolled back to {to}: a rollback returns to {now.previous} ({now.describe()}); "
                f"to make {to} serve, cut over to it"
            )
        if now.previous in now.retired:
            raise ServingChangeRefused(f"cannot roll back to {now.previous}: it was retired")
        return self._write(
            now, replace(now, serving=now.previous, previous=now.serving, action="rollback"), by, run_id
        )

    def retire(self, key: str, by: str, run_id: str = "") -> ServingState:
        """Stop keeping `key` up to date; its tables stay until removed, but search can no longer roll
        back to it."""
        marengo_model(key)
        now = self.current()
        if key == now.serving:
            raise ServingChangeRefused(f"{key} serves search: cut over to another version before retiring it")
        if key in now.retired:
            raise ServingChangeRefused(f"{key} is already retired")
        previous = None if now.previous == key else now.previous
        changed = replace(now, previous=previous, retired=(*now.retired, key), action="retire")
        return self._write(now, changed, by, run_id)

    def _write(self, read: ServingState, new: ServingState, by: str, run_id: str) -> ServingState:
        new = replace(new, since=datetime.now(UTC), by=by, run_id=run_id, sequence=read.sequence + 1)
        body = json.dumps(new.record(), sort_keys=True).encode()
        name = f"{new.sequence:08d}.json"
        if not self.folder.create(name, body):
            winner = self._readable(name)
            won = f": {winner.describe_change()} was recorded first" if winner else ""
            raise ServingConflict(
                f"the {self.family} serving version changed while this change was being made{won}: "
                f"look at `mediaembed serving` and try again if still needed",
                winner,
            )
        return new

    def _readable(self, name: str) -> ServingState | None:
        """The record `name`, or None when it cannot be read or parsed (the refusal then names none)."""
        try:
            return ServingState.from_record(json.loads(self.folder.read(name)))
        except (OSError, ClientError, ValueError, KeyError, TypeError):
            return None
