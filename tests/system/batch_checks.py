"""What a batch run (``EnhancePhotoBatchOperator``) must show after kills: every photo in the manifest as
enhanced with its result on disk, and each photo charged once, except an item whose submission's
outcome was unknown (an intent the batch's ledger never got a job id for, when a kill fell between the
POST and the ledger's write): it may be charged once per such intent.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any


def ledger_records(output: Path) -> list[dict[str, Any]]:
    """The batch ledger's records (``<output>/.hitpaw/ledger.jsonl``); a line cut by a kill is skipped."""
    records = []
    for line in (output / ".hitpaw" / "ledger.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def check_batch(output: Path, summary: dict[str, Any], photos: list[str], charges: list[dict[str, Any]]) -> dict[str, int]:
    """Assert the run's outcome against the ledger and the sandbox's charges; the counts it found.

    :param output: the batch's ``output_path``.
    :param summary: the task's return value.
    :param photos: the batch's photo URLs.
    :param charges: the sandbox's submissions of this run.
    """
    manifest_path = Path(str(summary["manifest"]).removeprefix("file://"))
    manifest = [json.loads(line) for line in manifest_path.read_text(encoding="utf-8").splitlines()]
    assert sorted(row["source"] for row in manifest) == sorted(photos), "the manifest does not list every photo"
    assert {row["outcome"] for row in manifest} == {"enhanced"}, Counter(row["outcome"] for row in manifest)
    assert summary["counts"] == {"enhanced": len(photos)}, summary
    missing = [row["output"] for row in manifest if not row["output"] or not (output / row["output"]).is_file()]
    assert not missing, f"{len(missing)} results missing, e.g. {missing[:3]}"

    intents: Counter[str] = Counter()
    recorded_jobs: dict[str, set[str]] = defaultdict(set)
    for record in ledger_records(output):
        if record.get("event") == "intent":
            intents[record["source"]] += 1
        elif record.get("event") == "submitted" and not record.get("repoll"):
            recorded_jobs[record["source"]].add(record["job_id"])
    unknown = {url: intents[url] - len(recorded_jobs[url]) for url in photos if intents[url] > len(recorded_jobs[url])}
    charged_jobs: dict[str, set[str]] = defaultdict(set)
    for charge in charges:
        charged_jobs[charge["img_url"]].add(charge["job_id"])
    assert set(charged_jobs) == set(photos), sorted(set(charged_jobs) ^ set(photos))[:5]
    for url in photos:
        assert recorded_jobs[url] <= charged_jobs[url], (url, recorded_jobs[url], charged_jobs[url])
        if url in unknown:
            assert 1 <= len(charged_jobs[url]) <= intents[url], (url, charged_jobs[url], intents[url])
        else:
            assert len(charged_jobs[url]) == 1, (url, sorted(charged_jobs[url]))
    coins_of = {c["job_id"]: c["coins"] for c in charges}
    assert summary["coins"] == sum(coins_of[job] for jobs in recorded_jobs.values() for job in jobs), summary
    return {
        "photos": len(photos),
        "charges": len(charges),
        "unknown_outcome_items": len(unknown),
        "orphaned_charges": sum(len(charged_jobs[url] - recorded_jobs[url]) for url in photos),
    }
