"""The batch ledger: what was about to be paid for, what was paid for, and how each item ended.

It is kept under ``output_path`` (``.hitpaw/ledger.jsonl`` in a local folder; one object per write
under ``.hitpaw/ledger/`` in object storage, where nothing can be appended to) and it is the truth for
retries, crashes, clears and later runs, on every Airflow version: an intent is written *before* a
submission is sent, the job id and its coins right after the reply. So:

- an item with a job id is polled, never submitted again;
- an item with an intent and no job id is an *unknown outcome* (the request may have created a job),
  unless the intent was withdrawn (``not_sent``: the request certainly created nothing);
- an item whose result was saved is skipped by later runs with the same settings.

Each line is one JSON record with ``item`` (the item's key) and ``event``; reading folds them, in
order, into the latest state of each item. A line cut by a crash is ignored (it was never relied on:
the request it announced had not been sent yet, or its reply is an unknown outcome).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTENT = "intent"
SUBMITTED = "submitted"
DONE = "done"
FAILED = "failed"
REFUSED = "refused"
UNKNOWN = "unknown"
#: The job could not be followed to its end in this attempt (timed out, result not saved, status
#: requests failing): a later attempt polls it again.
STALLED = "stalled"
#: The announced submission was certainly not created (a 429, a refused connection): the intent is
#: withdrawn and the item waits for a submission again.
NOT_SENT = "not_sent"
STOP = "stop"
_ITEM_EVENTS = frozenset({INTENT, SUBMITTED, DONE, FAILED, REFUSED, UNKNOWN, STALLED, NOT_SENT})
#: Object-storage segments read before they are folded into one (a snapshot) on the next load.
MAX_SEGMENTS = 64


@dataclass
class LedgerState:
    """The folded ledger.

    :param items: item key -> its latest state (the merged records, ``event`` the latest one).
    :param stops: ``(run, try)`` -> why submissions were stopped in that attempt (e.g. HitPaw said
        the account has no coins left).
    """

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    stops: dict[tuple[str, int], str] = field(default_factory=dict)

    def apply(self, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event == STOP:
            self.stops[(str(record.get("run")), int(record.get("try") or 0))] = str(record.get("reason") or "")
            return
        key = record.get("item")
        if event not in _ITEM_EVENTS or not isinstance(key, str):
            return
        old = self.items.get(key, {})
        coins_by_run = dict(old.get("coins_by_run") or {})
        if record.get("snapshot"):  # a whole folded state: it replaces, its totals are not added again
            for run, coins in (record.get("coins_by_run") or {}).items():
                coins_by_run[run] = max(coins_by_run.get(run, 0), int(coins))
            self.items[key] = {**{k: v for k, v in record.items() if k != "snapshot"}, "coins_by_run": coins_by_run}
            return
        if event in (INTENT, NOT_SENT):  # the previous job's details no longer describe the item
            merged = {k: v for k, v in record.items() if k != "coins_by_run"}
        else:
            merged = {**old, **{k: v for k, v in record.items() if k != "coins_by_run"}}
        if event == SUBMITTED:
            run = str(record.get("run"))
            coins_by_run[run] = coins_by_run.get(run, 0) + int(record.get("coins") or 0)
        merged["coins_by_run"] = coins_by_run
        self.items[key] = merged

    def coins_spent(self, run: str) -> int:
        """Coins the submissions of ``run`` were charged (every try, every job, failed ones too)."""
        return sum(int(item.get("coins_by_run", {}).get(run, 0)) for item in self.items.values())

    def snapshot(self) -> list[dict[str, Any]]:
        """Records that fold into this same state."""
        records = [{**item, "snapshot": True} for item in self.items.values()]
        records += [
            {"event": STOP, "run": run, "try": try_number, "reason": reason}
            for (run, try_number), reason in sorted(self.stops.items())
        ]
        return records


class Ledger:
    """The ledger of one output folder.

    :param output_path: the batch's ``output_path`` (a local path, a ``file:`` URI, an object-storage
        URL or an ``ObjectStoragePath``).
    """

    def __init__(self, output_path: Any) -> None:
        from airflow_provider_hitpaw.batch.folders import local_folder, storage_folder

        local = local_folder(output_path)
        if local is not None:
            self._store: _LocalStore | _SegmentStore = _LocalStore(local / ".hitpaw" / "ledger.jsonl")
        else:
            self._store = _SegmentStore(storage_folder(output_path) / ".hitpaw" / "ledger")

    @property
    def location(self) -> str:
        return self._store.location

    def load(self) -> LedgerState:
        state = LedgerState()
        for record in self._store.read():
            state.apply(record)
        self._store.compact(state)
        return state

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Write records durably (to disk, or as one object) before returning."""
        stamped = [{**record, "at": round(time.time(), 3)} for record in records]
        if stamped:
            self._store.write(stamped)


def _lines(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in records).encode()


def _parse(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The records of ``lines``, one at a time (a ledger is folded as it is read, never held whole)."""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # cut by a crash mid-write
            continue
        if isinstance(record, dict):
            yield record


class _LocalStore:
    """One append-only file, each write flushed to disk (fsync) before the request it announces."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    def read(self) -> Iterator[dict[str, Any]]:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            yield from _parse(handle)

    def write(self, records: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = _lines(records)
            if os.fstat(fd).st_size and not self._ends_with_newline():
                data = b"\n" + data  # after a line cut by a crash: start a fresh one
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def compact(self, state: LedgerState) -> None:
        """Appending stays cheap; the file is read once per task resume."""


class _SegmentStore:
    """One object per write (object storage cannot append), folded into a snapshot now and then."""

    def __init__(self, folder: Any) -> None:
        self.folder = folder
        self.location = str(folder)

    def _segments(self) -> list[Any]:
        try:
            return sorted((p for p in self.folder.iterdir() if p.name.endswith(".jsonl")), key=lambda p: p.name)
        except (FileNotFoundError, NotADirectoryError):  # nothing written yet
            return []

    def read(self) -> Iterator[dict[str, Any]]:
        for segment in self._segments():
            yield from _parse(segment.read_bytes().splitlines())

    def write(self, records: list[dict[str, Any]]) -> None:
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"
        (self.folder / name).write_bytes(_lines(records))

    def compact(self, state: LedgerState) -> None:
        segments = self._segments()
        if len(segments) <= MAX_SEGMENTS:
            return
        # The snapshot is written first and named after every segment it folds, so a crash between
        # the two steps leaves records that fold into the same state again.
        self.write(state.snapshot())
        for segment in segments:
            segment.unlink()
