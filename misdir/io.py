"""Writing results so that a crash never leaves a half-written file behind."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()
"""The mode `open(path, "w")` gives a new file in this process (0644 under the usual umask)."""


def fsync_directory(directory: str | Path) -> None:
    """Make the names created or renamed in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)  # mkstemp (and safetensors) make 0600 files; a result is as readable as any
        os.replace(tmp, path)
        fsync_directory(path.parent)  # the rename itself survives a power cut
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def check_settings(path: str | Path, settings: dict[str, Any]) -> None:
    """A resumable run's settings: written on its first start; on a resume, any that changed are refused."""
    path = Path(path)
    settings = json.loads(json.dumps(settings, default=str))  # compare as they read back from disk
    if not path.exists():
        write_json_atomic(path, settings)
        return
    before = json.loads(path.read_text())
    changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
    if changed:
        listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"{path.parent} holds a run with other settings ({listed}); use another --out")


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class RecordLog:
    """An append-only JSONL file of records with unique keys: the resumable store of a long run.

    Each record is written as one line, flushed and fsynced before ``append`` returns, so a killed run
    loses at most the record it was writing. On opening, a torn last line (a run killed mid-write) is
    cut off and reported; any other unreadable line is an error naming the file and line, never skipped.
    """

    def __init__(self, path: str | Path, key: str = "key"):
        self.path = Path(path)
        self.key = key
        self._records: dict[str, dict[str, Any]] = {}
        self.repaired_bytes = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            self.repaired_bytes = len(data) - complete
            log.warning(
                "%s: cut a torn last line of %d bytes (a run was killed mid-write)", self.path, self.repaired_bytes
            )
            with self.path.open("rb+") as f:
                f.truncate(complete)
                os.fsync(f.fileno())
        for number, raw in enumerate(data[:complete].splitlines(), start=1):
            try:
                record = json.loads(raw)
                key = str(record[self.key])
            except (ValueError, KeyError, TypeError, RecursionError) as err:
                raise ValueError(f"{self.path} line {number}: not a record with a {self.key!r} field ({err})") from err
            if key in self._records:
                raise ValueError(f"{self.path} line {number}: duplicate record {self.key}={key!r}")
            self._records[key] = record

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def records(self) -> list[dict[str, Any]]:
        """All records in the order they were written."""
        return list(self._records.values())

    def append(self, record: dict[str, Any]) -> None:
        key = str(record[self.key])
        if key in self._records:
            raise ValueError(f"{self.path}: record {self.key}={key!r} is already written")
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        self._records[key] = record


LOCK_FILE = ".misdir.lock"
"""The file in an output directory that `run_lock` holds."""


class RunLockedError(RuntimeError):
    """Another run is writing the same output directory."""


@contextmanager
def run_lock(directory: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` for one run; a second run on it fails at once, naming the holder.

    The lock is an ``flock`` on ``directory/.misdir.lock``: the kernel drops it when the holding process
    dies, so a killed run never leaves a stale lock behind. A run that ends removes the file while it still
    holds the lock; a run that locked a file some other run removed meanwhile (its inode no longer the path's)
    lets it go and locks the path's new file, so two runs never hold two files of one name.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    while True:
        f = path.open("a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunLockedError(
                f"{directory} is in use by {holder} (lock {path}); wait for it or choose another --out"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(f.fileno()).st_ino:
            break
        f.close()  # the file was removed by the run that held it before us: lock the path's new one
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        yield directory
    finally:
        with suppress(OSError):
            path.unlink()  # still holding the lock: no other run holds this file
        f.close()
