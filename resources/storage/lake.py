"""The lake: Parquet tables that are the system of record, on a local directory or under s3://."""

from __future__ import annotations

import re

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import Field, PrivateAttr

from resources.storage.location import Location, location
from resources.storage.retry import race_retries
from resources.storage.s3_storage import S3Storage
from resources.tables.serving_versions import (
    DEFAULT_INITIAL_SERVING,
    FAMILY,
    INITIAL_SERVING_ENV,
    ServingVersions,
    record_folder,
)

# `<name>.parquet.<uuid4 hex>.tmp`: what write_table writes locally before its atomic rename, and what a
# killed write leaves behind.
TEMPORARY = re.compile(r"\.parquet\.[0-9a-f]{32}\.tmp$")
PARQUET = pads.ParquetFileFormat()
# A listing can name a file that a concurrent ledger compaction deletes before it is read: list again.
READ_ATTEMPTS = 5


class Lake(dg.ConfigurableResource):
    """Where tables live. Every write is whole-file and atomic, so readers never see half a table."""

    root: str = Field(description="Local directory or s3://bucket/prefix holding the tables.")
    storage: S3Storage
    stale_temporary_sec: float = Field(
        default=3600.0,
        description="A local temporary file older than this is litter from a killed write and is deleted "
        "by the next write to its folder (a live write renames its own within seconds).",
    )
    serving_version: str | None = Field(
        default=None,
        description="The version that serves search before the first cut-over (docs/migration.md); bound "
        f"from {INITIAL_SERVING_ENV} where it is set. Unset or empty: {DEFAULT_INITIAL_SERVING}. "
        "The serving record in the lake decides from the first cut-over on.",
    )
    _swept: set[str] = PrivateAttr(default_factory=set)
    _location: Location | None = PrivateAttr(default=None)

    @property
    def location(self) -> Location:
        """The root, parsed once: every local-or-S3 difference of the lake is in it."""
        if self._location is None:
            self._location = location(self.root, self.storage)
        return self._location

    def _fs_and_base(self) -> tuple[pafs.FileSystem, str]:
        return self.location.filesystem(), self.location.arrow_path()

    def uri(self, relative: str) -> str:
        return f"{self.root.rstrip('/')}/{relative}"

    def table_uri(self, relative: str) -> str:
        """Where a table library (Delta Lake) finds a folder: an s3:// URI, or an absolute local path."""
        return self.location.delta_table(relative)[0]

    def serving_versions(self, family: str = FAMILY) -> ServingVersions:
        """The serving pointer of a model family, kept in this lake."""
        return ServingVersions(record_folder(self.location, family), family, self.serving_version)

    def delta_storage_options(self) -> dict[str, str] | None:
        """delta-rs settings for an s3:// lake: the same object_store keys LanceDB takes."""
        return self.location.delta_table("")[1]

    def write_table(self, table: pa.Table, relative: str) -> None:
        """Write a whole Parquet file; on a local disk via a temporary file and an atomic rename, after
        removing (once per folder and process: cheap, and enough) the temporaries killed writes left there."""
        folder = relative.rsplit("/", 1)[0] if "/" in relative else ""
        if folder not in self._swept:
            self._swept.add(folder)
            self.location.remove_stale_temporaries(
                folder, TEMPORARY, self.stale_temporary_sec, recursive=False
            )
        self.location.write_whole(relative, lambda path, fs: pq.write_table(table, path, filesystem=fs))

    def read_table(self, relative: str, columns: list[str] | None = None) -> pa.Table | None:
        """A single Parquet file, or None when it has not been written yet."""
        fs, base = self._fs_and_base()
        path = f"{base}/{relative}"
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        return pq.read_table(path, filesystem=fs, columns=columns)

    def read_tables(
        self,
        relative_paths: list[str],
        columns: list[str] | None = None,
        where: pc.Expression | None = None,
    ) -> pa.Table | None:
        """Several Parquet files as one table; with `where`, only the rows it selects (filtered batch by
        batch as the files are scanned, so the rows left out are never held together)."""
        if not relative_paths:
            return None
        fs, base = self._fs_and_base()
        dataset = pads.dataset([f"{base}/{p}" for p in relative_paths], filesystem=fs, format="parquet")
        return _released(dataset.to_table(columns=columns, filter=where))

    def file_metadata(self, relative_paths: list[str]) -> list[dict[bytes, bytes]]:
        """The key-value metadata of each Parquet file (its footer alone is read)."""
        fs, base = self._fs_and_base()
        return [dict(pq.read_schema(f"{base}/{p}", filesystem=fs).metadata or {}) for p in relative_paths]

    def parquet_fragments(self, uris: list[str]) -> list[pads.ParquetFileFragment]:
        """One fragment per Parquet file, its footer read (so later scans skip reading it again)."""
        fs, _ = self._fs_and_base()
        fragments = [PARQUET.make_fragment(path, filesystem=fs) for path in self.location.arrow_paths(uris)]
        for fragment in fragments:
            fragment.ensure_complete_metadata()
        return fragments

    def fragments_dataset(self, fragments: list[pads.ParquetFileFragment], schema: pa.Schema) -> pads.Dataset:
        fs, _ = self._fs_and_base()
        return pads.FileSystemDataset(fragments, schema=schema, format=PARQUET, filesystem=fs)

    def file_stamps(self, uris: list[str]) -> list[tuple[int, int] | None]:
        """(size, modification time in ns) of each file, None for one that does not exist: one stat, or one
        HEAD on S3, each."""
        fs, _ = self._fs_and_base()
        stamps: list[tuple[int, int] | None] = []
        for info in fs.get_file_info(self.location.arrow_paths(uris)):
            if info.type != pafs.FileType.File:
                stamps.append(None)
            else:
                stamps.append((int(info.size or 0), int(info.mtime_ns or 0)))
        return stamps

    def read_dataset(self, relative_dir: str, schema: pa.Schema) -> pa.Table:
        """Every Parquet file under a folder, as one table (empty with `schema` when there are none).

        A file listed but gone by the time it is read was folded into another by a concurrent compaction,
        which writes the folded file before deleting: listing again finds every event.
        """
        fs, base = self._fs_and_base()

        def read() -> pa.Table:
            files = self.list_files(relative_dir)
            if not files:
                return schema.empty_table()
            paths = [f"{base}/{f}" for f in files]
            return pads.dataset(paths, filesystem=fs, format="parquet", schema=schema).to_table()

        return _released(race_retries(FileNotFoundError, READ_ATTEMPTS)(read))

    def delete_files(self, relative_paths: list[str], missing_ok: bool = False) -> None:
        """Delete files; with `missing_ok`, one that another process already deleted is not an error."""
        fs, base = self._fs_and_base()
        for path in relative_paths:
            try:
                fs.delete_file(f"{base}/{path}")
            except FileNotFoundError:
                if not missing_ok:
                    raise

    def remove_stale_temporaries(self, relative_dir: str = "") -> list[str]:
        """Delete the temporary files killed writes left under a folder of a local lake; returns them.

        Only files older than `stale_temporary_sec` go, so a write in progress keeps its own. On s3:// a
        write is a single PUT or a multipart upload, which leaves no object behind if it is killed (an
        incomplete upload is removed by the bucket's AbortIncompleteMultipartUpload lifecycle rule).
        """
        return self.location.remove_stale_temporaries(
            relative_dir, TEMPORARY, self.stale_temporary_sec, recursive=True
        )

    def list_files(self, relative_dir: str) -> list[str]:
        """Relative paths of the finished Parquet files under a folder, sorted."""
        fs, base = self._fs_and_base()
        selector = pafs.FileSelector(f"{base}/{relative_dir}", recursive=True, allow_not_found=True)
        prefix = len(base) + 1
        return sorted(
            info.path[prefix:]
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.path.endswith(".parquet")
        )


def _released(table: pa.Table) -> pa.Table:
    """`table`, once the scan that read it has handed its buffers back (see `return_freed_memory`)."""
    return_freed_memory()
    return table


def return_freed_memory() -> None:
    """Hand the buffers Arrow's allocator keeps after they are freed back to the OS. A read of a million
    rows leaves about twice its own size behind, and what a run allocates next (planning's hash tables,
    Python objects) comes on top: returned after each large read, a run's peak is its data's, not its
    history's."""
    pa.default_memory_pool().release_unused()
