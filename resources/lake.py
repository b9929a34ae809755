"""The lake: Parquet tables that are the system of record, on a local directory or under s3://."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import Field

from resources.s3_storage import S3Storage, S3Uri


class Lake(dg.ConfigurableResource):
    """Where tables live. Every write is whole-file and atomic, so readers never see half a table."""

    root: str = Field(description="Local directory or s3://bucket/prefix holding the tables.")
    storage: S3Storage

    def _fs_and_base(self) -> tuple[pafs.FileSystem, str]:
        if self.root.startswith("s3://"):
            return self.storage.arrow_filesystem(), S3Uri.parse(self.root).arrow_path()
        return pafs.LocalFileSystem(), str(Path(self.root).expanduser().resolve())

    def uri(self, relative: str) -> str:
        return f"{self.root.rstrip('/')}/{relative}"

    def write_table(self, table: pa.Table, relative: str) -> None:
        """Write a whole Parquet file; on a local disk via a temporary file and an atomic rename."""
        fs, base = self._fs_and_base()
        path = f"{base}/{relative}"
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            pq.write_table(table, tmp, filesystem=fs)
            fs.move(tmp, path)
        else:
            pq.write_table(table, path, filesystem=fs)

    def read_table(self, relative: str, columns: list[str] | None = None) -> pa.Table | None:
        """A single Parquet file, or None when it has not been written yet."""
        fs, base = self._fs_and_base()
        path = f"{base}/{relative}"
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        return pq.read_table(path, filesystem=fs, columns=columns)

    def read_tables(self, relative_paths: list[str], columns: list[str] | None = None) -> pa.Table | None:
        if not relative_paths:
            return None
        fs, base = self._fs_and_base()
        dataset = pads.dataset([f"{base}/{p}" for p in relative_paths], filesystem=fs, format="parquet")
        return dataset.to_table(columns=columns)

    def read_dataset(self, relative_dir: str, schema: pa.Schema) -> pa.Table:
        """Every Parquet file under a folder, as one table (empty with `schema` when there are none)."""
        files = self.list_files(relative_dir)
        if not files:
            return schema.empty_table()
        fs, base = self._fs_and_base()
        dataset = pads.dataset([f"{base}/{f}" for f in files], filesystem=fs, format="parquet", schema=schema)
        return dataset.to_table()

    def delete_files(self, relative_paths: list[str]) -> None:
        fs, base = self._fs_and_base()
        for path in relative_paths:
            fs.delete_file(f"{base}/{path}")

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
