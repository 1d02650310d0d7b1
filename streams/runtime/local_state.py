"""`store: rocksdb://`: each store partition also kept on local disk, so a restarted
worker reads its state from RocksDB and only the changelog written since, instead of
the whole changelog.

One RocksDB per store and partition (`.sluice-data/<app_id>/<store>/<partition>/`), as
Kafka Streams keeps one state directory per task: a partition is opened when it is
assigned and closed when it is revoked, so two workers on one host never hold the same
database. A partition's database holds the state as of a checkpoint whose offsets were
committed — it is written only after the commit — and the changelog offset that state
reaches (`_CHANGELOG_KEY`); a restore reads the changelog from there on, with the same
rules as a restore from its start (streams.runtime.changelog).

The stores still work on an in-memory map (the steps read and write through it); the
local copy makes restarts quick, it does not make state larger than memory possible.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("sluice.state")

_CHANGELOG_KEY = b"\x00\x00sluice:changelog-offset"


class PartitionDB:
    """The local copy of one store partition."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = Rdict(str(path), Options(raw_mode=True))

    def load(self) -> tuple[Iterator[tuple[str, Any]], int]:
        """(key, value) of every entry, and the changelog offset they reach (0: none)."""
        raw = self._db.get(_CHANGELOG_KEY)
        offset = int(raw) if raw is not None else 0

        def entries() -> Iterator[tuple[str, Any]]:
            for key, value in self._db.items():
                if key != _CHANGELOG_KEY:
                    assert isinstance(key, bytes)  # raw mode: keys are bytes
                    yield key.decode(), orjson.loads(value)

        return entries(), offset

    def write(self, changes: list[tuple[str, Any]], changelog_offset: int) -> None:
        """Changed keys (None deletes) and the changelog offset now reached, at once."""
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                batch.delete(key.encode())
            else:
                batch.put(key.encode(), orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
        batch.put(_CHANGELOG_KEY, str(changelog_offset).encode())
        self._db.write(batch)

    def close(self) -> None:
        self._db.close()


class LocalState:
    """The open partition databases of one worker."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._open: dict[tuple[str, int], PartitionDB] = {}

    def partition(self, store: str, partition: int) -> PartitionDB:
        key = (store, partition)
        db = self._open.get(key)
        if db is None:
            db = self._open[key] = PartitionDB(self.root / store / str(partition))
        return db

    def close(self, store: str, partition: int) -> None:
        db = self._open.pop((store, partition), None)
        if db is not None:
            db.close()

    def discard(self, store: str, partition: int) -> None:
        """A copy that cannot be trusted (it could not be read): removed, so the partition
        is restored from the changelog alone."""
        self.close(store, partition)
        shutil.rmtree(self.root / store / str(partition), ignore_errors=True)

    def close_all(self) -> None:
        for db in self._open.values():
            db.close()
        self._open.clear()
