"""The manifest of a batch: one JSON Lines row per item, written under ``output_path`` at the end."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter
from typing import Any

from airflow_provider_hitpaw.batch.folders import local_folder, storage_folder

#: How an item ended, as the manifest and the XCom count them.
ENHANCED = "enhanced"  # its result was saved by this run
EXISTING = "existing"  # its result was saved by an earlier run (skip_existing)
FAILED = "failed"  # its job ended in a failure state
REFUSED = "refused"  # refused before a job existed (by a check, or by HitPaw): nothing charged
UNKNOWN_OUTCOME = "unknown_outcome"  # the submission's reply was lost: it may have been charged
TIMED_OUT = "timed_out"  # its job had not ended by the deadline (a retry polls it again)
SAVE_FAILED = "save_failed"  # its job completed but the result could not be saved (a retry tries again)
STATUS_FAILED = "status_failed"  # its job's status could not be read (a retry polls it again)
SKIPPED_BUDGET = "skipped_budget"  # not submitted: max_coins, or HitPaw said there were no coins left
NOT_SUBMITTED = "not_submitted"  # not submitted for another reason (submissions were stopped)
OUTCOMES = (ENHANCED, EXISTING, FAILED, REFUSED, UNKNOWN_OUTCOME, TIMED_OUT, SAVE_FAILED, STATUS_FAILED,
            SKIPPED_BUDGET, NOT_SUBMITTED)
#: Outcomes that leave the item unresolved: the task fails while any item ends so.
UNRESOLVED = frozenset({UNKNOWN_OUTCOME, TIMED_OUT, SAVE_FAILED, STATUS_FAILED, NOT_SUBMITTED})


def manifest_name(run_label: str) -> str:
    return "manifest-" + re.sub(r"[^A-Za-z0-9_.=+-]", "_", run_label)[:200] + ".jsonl"


def write_manifest(output_path: Any, run_label: str, rows: list[dict[str, Any]]) -> str:
    """Write the rows to ``<output_path>/manifests/manifest-<run>.jsonl`` (replacing a previous
    try's) and return where; a local file is written to a temporary name and renamed."""
    data = "".join(json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n" for row in rows).encode()
    name = manifest_name(run_label)
    local = local_folder(output_path)
    if local is not None:
        folder = local / "manifests"
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{name}.{uuid.uuid4().hex[:8]}.part"
        temporary.write_bytes(data)
        os.replace(temporary, folder / name)
        return str(folder / name)
    target = storage_folder(output_path) / "manifests" / name
    target.write_bytes(data)
    return str(target)


def count_outcomes(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(row["outcome"] for row in rows)
    return {outcome: counts[outcome] for outcome in OUTCOMES if counts[outcome]}
