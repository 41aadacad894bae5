"""Operator that enhances a batch of photos in one task: a ledger, a budget, a manifest, one trigger."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseOperator

from airflow_provider_hitpaw.batch import ledger as records
from airflow_provider_hitpaw.batch import manifest as outcomes
from airflow_provider_hitpaw.batch.folders import folder_destination, local_folder
from airflow_provider_hitpaw.batch.items import BatchItem, path_items, url_items
from airflow_provider_hitpaw.batch.ledger import Ledger, LedgerState
from airflow_provider_hitpaw.batch.manifest import count_outcomes, write_manifest
from airflow_provider_hitpaw.batch.pacing import Pacer
from airflow_provider_hitpaw.connection_fields import DEFAULT_CONN_ID
from airflow_provider_hitpaw.contract.endpoints import PHOTO_ENHANCER_PATH
from airflow_provider_hitpaw.downloads import check_writable_destination
from airflow_provider_hitpaw.errors import (
    HitPawAuthError,
    HitPawBatchError,
    HitPawError,
    HitPawInsufficientCoinsError,
    HitPawJobFailedError,
    HitPawRateLimitError,
    HitPawSubmitOutcomeUnknownError,
    HitPawTaskNotFoundError,
    HitPawValidationError,
)
from airflow_provider_hitpaw.events import (
    DEFERRAL_GRACE_SECONDS,
    CompletedJob,
    ended_jobs_from_event,
    is_final_failure,
)
from airflow_provider_hitpaw.models import (
    build_submit_payload,
    validate_dpi,
    validate_exif,
    validate_model_name,
)
from airflow_provider_hitpaw.operators.hitpaw import (
    check_poll_interval,
    check_wait_timeout,
    is_template,
    output_extension_for,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

#: Submissions in a row whose outcome was unknown after which an attempt stops submitting: a path
#: that loses every reply must not be paid into blindly.
MAX_UNKNOWN_IN_A_ROW = 5
#: How long submissions may keep failing with nothing sent (429s, refused connections) before the
#: attempt gives up on the items still waiting (they stay unsubmitted; a retry goes on).
MAX_SUBMIT_STALL_SECONDS = 600.0
UNKNOWN_POLICIES = ("fail", "resubmit")
#: Why an attempt stopped submitting, when its items left unsubmitted count as over budget.
NO_COINS = "not enough coins"


class EnhancePhotoBatchOperator(BaseOperator):
    """Enhance many photos in one task, streaming each result to ``output_path``.

    Up to ``max_in_flight`` jobs run at once; the task submits (in the worker only, never in a
    trigger), then waits for them all in one :class:`~airflow_provider_hitpaw.triggers.jobs.HitPawJobsTrigger`
    (or in the worker with ``deferrable=False``), saves the results that ended, submits more, and so on.

    Every submission is announced in a ledger under ``output_path`` (``.hitpaw/``) before it is sent,
    and its job id and coins are written right after the reply. The ledger, not the task's memory,
    decides what a retry, a clear, a crash or a later run does: a recorded job is polled, never
    submitted again; a result already saved is skipped (``skip_existing``); a submission whose reply
    was lost is an unknown outcome, never resubmitted unless ``on_unknown_outcome="resubmit"``.

    At the end a manifest (JSON Lines, one row per item) is written to
    ``<output_path>/manifests/manifest-<dag>__<run>__<task>.jsonl`` and the task returns a small dict:
    ``items``, ``counts`` (by outcome), ``coins`` (charged to this run, every try), ``manifest``.
    ``output_path`` is the task's outlet asset; its event's extra holds the same counts.

    :param output_path: the folder (local path, ``file:`` URI, object-storage URL or
        ``ObjectStoragePath``) that receives the results, named ``<photo stem>-<job_id><extension>``,
        the ledger and the manifests. Checked (created, written to) before anything is paid. (templated)
    :param img_urls: public http(s) URLs of the photos (a list, a template or an XComArg). (templated)
    :param input_path: private photos to upload first (free): a local folder, a glob
        (``/data/in/*.jpg``, ``s3://bucket/in/*.jpg``) or an object-storage prefix. (templated)
    :param model_name: the HitPaw model. (templated)
    :param extension: the results' extension; by default each photo's own. (templated)
    :param exif: keep the photos' EXIF data.
    :param dpi: DPI written into the results. (templated)
    :param allow_unknown_model: send a model name this provider does not list.
    :param hitpaw_conn_id: the ``hitpaw`` connection.
    :param poll_interval: seconds between two rounds of status requests, at least 1.
    :param timeout: seconds a job may take from its submission (or from the start of a later try
        that polls it again); a job still running then is ``timed_out`` and fails the task (a retry
        polls it again, it is never resubmitted).
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param max_in_flight: jobs submitted and not ended, never more (default 20).
    :param refill_after: ended jobs that wake the task to submit more (default half of
        ``max_in_flight``).
    :param submits_per_second: the pace of submissions (default 2); a 429 slows it down.
    :param max_coins: the budget of this run, in coins, over every try: a submission that could take
        the coins spent past it is not started (``skipped_budget``). Each photo's price is the
        estimate from its size (``preflight``), else the highest price seen for the model in this
        run, else the model's highest price.
    :param preflight: read each photo's size before paying (a ranged GET, or the file's header) to
        refuse one over the model's limits and estimate its price.
    :param skip_existing: skip an item whose result for the same source version, model, extension,
        EXIF and DPI is already recorded under ``output_path`` (default True).
    :param on_unknown_outcome: ``"fail"`` (default): an item whose submission's reply was lost is
        recorded and never resubmitted, and the task fails at the end listing it. ``"resubmit"``: a
        later try submits it again, within ``max_unknown_outcome_coins``.
    :param max_unknown_outcome_coins: with ``"resubmit"``, the most coins resubmissions of unknown
        outcomes may cost a run (required then).
    :param max_failed_items: failed or refused items the task tolerates (default 0).
    :param max_failed_fraction: the same as a fraction of the items (0 to 1); both must hold.
    """

    template_fields: Sequence[str] = (
        "img_urls", "input_path", "output_path", "model_name", "extension", "dpi", "max_coins",
    )
    ui_color = "#c4e3ff"

    def __init__(
        self,
        *,
        output_path: Any,
        model_name: str,
        img_urls: Any = None,
        input_path: Any = None,
        extension: str | None = None,
        exif: bool = False,
        dpi: int | str | None = None,
        allow_unknown_model: bool = False,
        hitpaw_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 5,
        timeout: float = 3600,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_in_flight: int = 20,
        refill_after: int | None = None,
        submits_per_second: float = 2,
        max_coins: int | str | None = None,
        preflight: bool = True,
        skip_existing: bool = True,
        on_unknown_outcome: str = "fail",
        max_unknown_outcome_coins: int | None = None,
        max_failed_items: int = 0,
        max_failed_fraction: float | None = None,
        **kwargs: Any,
    ) -> None:
        if not is_template(output_path) and "outlets" not in kwargs and output_path:
            kwargs["outlets"] = [output_asset(output_path)]
        super().__init__(**kwargs)
        self.output_path = output_path
        self.img_urls = img_urls
        self.input_path = input_path
        self.model_name = model_name
        self.extension = extension
        self.exif = exif
        self.dpi = dpi
        self.allow_unknown_model = allow_unknown_model
        self.hitpaw_conn_id = hitpaw_conn_id
        self.poll_interval = check_poll_interval(poll_interval, "poll_interval")
        self.timeout = check_wait_timeout(timeout)
        self.deferrable = deferrable
        self.max_in_flight = _positive_int(max_in_flight, "max_in_flight")
        self.refill_after = (
            _positive_int(refill_after, "refill_after") if refill_after is not None
            else max(1, math.ceil(self.max_in_flight / 2))
        )
        if isinstance(submits_per_second, bool) or not isinstance(submits_per_second, (int, float)) or not (
            0 < submits_per_second <= 100
        ):
            raise HitPawValidationError(f"submits_per_second must be in (0, 100], got {submits_per_second!r}")
        self.submits_per_second = float(submits_per_second)
        self.max_coins = max_coins
        self.preflight = preflight
        self.skip_existing = skip_existing
        if on_unknown_outcome not in UNKNOWN_POLICIES:
            raise HitPawValidationError(f"on_unknown_outcome must be 'fail' or 'resubmit', got {on_unknown_outcome!r}")
        if on_unknown_outcome == "resubmit" and max_unknown_outcome_coins is None:
            raise HitPawValidationError(
                "on_unknown_outcome='resubmit' needs max_unknown_outcome_coins: a resubmitted unknown "
                "outcome may be a second charge for the same photo"
            )
        self.on_unknown_outcome = on_unknown_outcome
        self.max_unknown_outcome_coins = (
            None if max_unknown_outcome_coins is None
            else _non_negative_int(max_unknown_outcome_coins, "max_unknown_outcome_coins")
        )
        self.max_failed_items = _non_negative_int(max_failed_items, "max_failed_items")
        if max_failed_fraction is not None and (
            isinstance(max_failed_fraction, bool) or not isinstance(max_failed_fraction, (int, float))
            or not 0 <= max_failed_fraction <= 1
        ):
            raise HitPawValidationError(f"max_failed_fraction must be between 0 and 1, got {max_failed_fraction!r}")
        self.max_failed_fraction = max_failed_fraction
        if not is_template(model_name):
            validate_model_name(model_name, allow_unknown_model=allow_unknown_model)

    # --- the settings, items and folder ---------------------------------------------------------------

    @cached_property
    def hook(self) -> HitPawHook:
        from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook

        return HitPawHook(self.hitpaw_conn_id)

    def _settings(self) -> dict[str, Any]:
        """What, with the photo's version, makes one enhancement: part of every item's key."""
        validate_model_name(self.model_name, allow_unknown_model=self.allow_unknown_model)
        return {
            "model": str(self.model_name),
            "extension": str(self.extension or ""),
            "exif": validate_exif(self.exif),
            "dpi": validate_dpi(self.dpi),
        }

    def _budget(self) -> int | None:
        if self.max_coins is None or self.max_coins == "" or self.max_coins == "None":
            return None
        return _non_negative_int(int(self.max_coins) if isinstance(self.max_coins, str) else self.max_coins,
                                 "max_coins")

    def _items(self) -> list[BatchItem]:
        items = url_items(self.img_urls) + path_items(self.input_path)
        if not items and self.img_urls is None and not self.input_path:
            raise HitPawValidationError("Give img_urls, input_path, or both")
        return items

    @staticmethod
    def _run_label(context: Context) -> str:
        ti = context["ti"]
        label = f"{ti.dag_id}__{ti.run_id}__{ti.task_id}"
        map_index = getattr(ti, "map_index", -1)
        return label if map_index in (None, -1) else f"{label}__{map_index}"

    # --- execution ------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        # Before anything is paid for; the ledger's first write (an intent) then precedes the first POST.
        check_writable_destination(folder_destination(self.output_path))
        return self._advance(context, None)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._advance(context, event)

    def _advance(self, context: Context, event: dict[str, Any] | None) -> dict[str, Any]:
        run = _Attempt(self, context)
        if event is not None:
            run.record_ended(event)
        while True:
            run.submit_more()
            waiting = run.jobs_to_poll()
            if not waiting:
                return run.finish()
            if self.deferrable and run.has_more_to_submit():
                # One round of polls from the worker first: when enough jobs ended while it submitted,
                # refilling now beats a deferral that would fire on its first poll.
                look = run.trigger(waiting)
                if run.record_ended(asyncio.run(look.wait(self.hook.settings, max_rounds=1))) >= look.fire_after:
                    continue
                waiting = run.jobs_to_poll()
                if not waiting:
                    continue
            trigger = run.trigger(waiting)
            if self.deferrable:
                self.defer(
                    trigger=trigger,
                    method_name="execute_complete",
                    timeout=timedelta(seconds=max(0.0, trigger.deadline - time.time()) + DEFERRAL_GRACE_SECONDS),
                )
            run.record_ended(asyncio.run(trigger.wait(self.hook.settings)))


class _Attempt:
    """One stretch of a batch task in the worker: from a start or resume to its next deferral."""

    def __init__(self, operator: EnhancePhotoBatchOperator, context: Context) -> None:
        self.op = operator
        self.context = context
        self.log = operator.log
        ti = context["ti"]
        self.run = operator._run_label(context)
        self.try_number = int(getattr(ti, "try_number", 1) or 1)
        self.settings = operator._settings()
        self.items = operator._items()
        self.keys = [item.key(self.settings) for item in self.items]
        self.ledger = Ledger(operator.output_path)
        self.state: LedgerState = self.ledger.load()
        self.budget = operator._budget()
        self.pacer = Pacer(operator.submits_per_second)
        # Items left out in this stretch (budget, stopped submissions): reported, never recorded.
        self.left_out: dict[str, str] = {}

    # --- what the ledger says about an item ------------------------------------------------------------

    def _this_attempt(self, entry: dict[str, Any]) -> bool:
        return entry.get("run") == self.run and int(entry.get("try") or 0) == self.try_number

    def _needs_submission(self, key: str) -> bool:
        entry = self.state.items.get(key)
        if entry is None or entry.get("event") == records.NOT_SENT:
            return True
        event = entry.get("event")
        if event == records.DONE:
            return not self.op.skip_existing and entry.get("run") != self.run
        if event == records.FAILED:
            return not self._this_attempt(entry) and not is_final_failure(entry.get("hitpaw_status"))
        if event == records.REFUSED:
            return not self._this_attempt(entry)
        if event in (records.INTENT, records.UNKNOWN):
            return self.op.on_unknown_outcome == "resubmit" and not self._this_attempt(entry)
        return False  # a job is recorded: it is polled

    def jobs_to_poll(self) -> dict[str, str]:
        """job id -> item key, for the jobs of this batch still to follow in this attempt."""
        jobs = {}
        for key in self.keys:
            entry = self.state.items.get(key)
            if entry is None or not entry.get("job_id"):
                continue
            event = entry.get("event")
            if event == records.SUBMITTED or (event == records.STALLED and not self._this_attempt(entry)):
                jobs[str(entry["job_id"])] = key
        return jobs

    def _write(self, *entries: dict[str, Any]) -> None:
        stamped = [{**entry, "run": self.run, "try": self.try_number} for entry in entries]
        self.ledger.append(stamped)
        for entry in stamped:
            self.state.apply(entry)

    # --- submitting ----------------------------------------------------------------------------------

    def submit_more(self) -> None:
        if (self.run, self.try_number) in self.state.stops:
            return
        in_flight = len(self.jobs_to_poll())
        unknown_in_a_row = 0
        stalled_since: float | None = None
        queue = [(item, key) for item, key in zip(self.items, self.keys, strict=True) if self._needs_submission(key)]
        position = 0
        while position < len(queue) and in_flight < self.op.max_in_flight:
            item, key = queue[position]
            outcome = self._submit_item(item, key)
            if outcome == "retry_later":
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > MAX_SUBMIT_STALL_SECONDS:
                    self._leave_out(queue[position:], outcomes.NOT_SUBMITTED)
                    self._write({"event": records.STOP, "reason": "submissions kept failing"})
                    return
                continue  # the same item again, after the pacer's longer pause
            stalled_since = None
            position += 1
            if outcome == "submitted":
                in_flight += 1
                unknown_in_a_row = 0
            elif outcome == "unknown":
                unknown_in_a_row += 1
                if unknown_in_a_row >= MAX_UNKNOWN_IN_A_ROW:
                    self.log.error("%d submissions in a row lost their reply: no more submissions in this try",
                                   unknown_in_a_row)
                    self._leave_out(queue[position:], outcomes.NOT_SUBMITTED)
                    self._write({"event": records.STOP, "reason": "replies lost"})
                    return
            elif outcome == "stop":
                self._leave_out(queue[position:], outcomes.SKIPPED_BUDGET)
                return

    def _leave_out(self, rest: list[tuple[BatchItem, str]], outcome: str) -> None:
        for _, key in rest:
            self.left_out.setdefault(key, outcome)

    def _price(self, item: BatchItem, img_url: str) -> tuple[int | None, dict[str, Any] | None]:
        """The item's estimated price (None: unknown) and, when a check refuses it, its refusal."""
        from airflow_provider_hitpaw.preflight import check_before_paying, file_photo_dimensions

        if not self.op.preflight:
            return None, None
        dimensions = None
        if item.is_file:
            dimensions = file_photo_dimensions(item.source)
            if dimensions is None:
                return None, None
        try:
            result = check_before_paying(self.hook, img_url, self.settings["model"], preflight=True,
                                         logger=self.log, dimensions=dimensions)
        except HitPawValidationError as refusal:
            return None, _error_fields(refusal)
        return result.estimated_coins, None

    def _worst_price(self) -> int | None:
        from airflow_provider_hitpaw.contract.pricing import UnpricedModelError, highest_coins

        seen = [int(e.get("coins") or 0) for e in self.state.items.values()
                if e.get("run") == self.run and e.get("model") == self.settings["model"] and e.get("coins")]
        if seen:
            return max(seen)
        try:
            return highest_coins(self.settings["model"])
        except UnpricedModelError:
            return None

    @property
    def hook(self) -> HitPawHook:
        return self.op.hook

    def _submit_item(self, item: BatchItem, key: str) -> str:
        """Submit one item: ``submitted``, ``refused``, ``unknown``, ``stop`` or ``retry_later``."""
        previous = self.state.items.get(key) or {}
        resubmitting_unknown = previous.get("event") in (records.INTENT, records.UNKNOWN)
        base = {"item": key, "source": item.source, "model": self.settings["model"]}
        img_url = item.source
        try:
            extension = output_extension_for(item.source, self.settings["extension"] or None)
            if not item.is_file:
                payload = build_submit_payload(img_url, self.settings["model"], extension, self.settings["exif"],
                                               self.settings["dpi"], allow_unknown_model=self.op.allow_unknown_model)
        except HitPawValidationError as refusal:
            self._write({**base, "event": records.REFUSED, **_error_fields(refusal)})
            return "refused"
        estimate, refusal_fields = self._price(item, img_url)
        if refusal_fields is not None:
            self._write({**base, "event": records.REFUSED, **refusal_fields})
            return "refused"
        price = estimate if estimate is not None else self._worst_price()
        if self.budget is not None:
            if price is None:
                self._write({**base, "event": records.REFUSED, "error_class": "HitPawValidationError",
                             "message": "no price is known for this model, so max_coins cannot be kept"})
                return "refused"
            if self._committed() + price > self.budget:
                self.log.info("Skipped %s: it may cost %d coins and %d of max_coins=%d are spent",
                              item.source[:200], price, self._committed(), self.budget)
                self.left_out[key] = outcomes.SKIPPED_BUDGET
                return "skipped"
        if resubmitting_unknown:
            limit = self.op.max_unknown_outcome_coins or 0
            if price is None or self._unknown_resubmitted_coins() + price > limit:
                self.left_out[key] = outcomes.UNKNOWN_OUTCOME
                return "skipped"
        if item.is_file:
            try:
                uploaded = self.hook.upload_file(item.source)
            except HitPawError as err:
                if err.retryable:
                    self.pacer.slow_down(getattr(err, "retry_after", None))
                    return "retry_later"
                self._write({**base, "event": records.REFUSED, **_error_fields(err)})
                return "refused"
            img_url = uploaded.access_url
            try:
                payload = build_submit_payload(img_url, self.settings["model"], extension, self.settings["exif"],
                                               self.settings["dpi"], allow_unknown_model=self.op.allow_unknown_model)
            except HitPawValidationError as refusal:
                self._write({**base, "event": records.REFUSED, **_error_fields(refusal)})
                return "refused"
        self.pacer.wait()
        self._write({**base, "event": records.INTENT, "estimate": price,
                     "resubmitted_unknown": bool(resubmitting_unknown)})
        try:
            job = self.hook.submit(PHOTO_ENHANCER_PATH, payload)
        except HitPawSubmitOutcomeUnknownError as err:
            self._write({**base, "event": records.UNKNOWN, **_error_fields(err), "estimate": price,
                         "resubmitted_unknown": bool(resubmitting_unknown)})
            self.log.error("The submission of %s may or may not have created a job: %s", item.source[:200], err)
            return "unknown"
        except HitPawInsufficientCoinsError as err:
            self._write({**base, "event": records.REFUSED, **_error_fields(err)})
            self._write({"event": records.STOP, "reason": NO_COINS})
            self.log.error("HitPaw says the account has not enough coins: no more submissions in this try")
            return "stop"
        except HitPawAuthError as err:
            self._write({**base, "event": records.REFUSED, **_error_fields(err)})
            self._write({"event": records.STOP, "reason": "the API key was refused"})
            return "stop"
        except HitPawError as err:
            if err.retryable:  # nothing was created (a 429, a refused connection): a free try later
                self._write({**base, "event": records.NOT_SENT, **_error_fields(err)})
                self.log.warning("Submission of %s not accepted (%s): trying again later", item.source[:200], err)
                self.pacer.slow_down(err.retry_after if isinstance(err, HitPawRateLimitError) else None)
                return "retry_later"
            self._write({**base, "event": records.REFUSED, **_error_fields(err)})
            return "refused"
        self.pacer.accepted()
        self._write({**base, "event": records.SUBMITTED, "job_id": job.job_id, "coins": job.consume_coins,
                     "deadline": time.time() + self.op.timeout,
                     "resubmitted_unknown": bool(resubmitting_unknown)})
        return "submitted"

    def _committed(self) -> int:
        """Coins this run spent, plus the estimates of its submissions whose outcome is unknown."""
        unknown = sum(int(e.get("estimate") or 0) for e in self.state.items.values()
                      if e.get("run") == self.run and e.get("event") in (records.INTENT, records.UNKNOWN))
        return self.state.coins_spent(self.run) + unknown

    def _unknown_resubmitted_coins(self) -> int:
        return sum(int(e.get("coins_by_run", {}).get(self.run, 0)) for e in self.state.items.values()
                   if e.get("resubmitted_unknown"))

    # --- waiting and saving ----------------------------------------------------------------------------

    def has_more_to_submit(self) -> bool:
        if (self.run, self.try_number) in self.state.stops:
            return False
        return any(self._needs_submission(key) and key not in self.left_out for key in self.keys)

    def trigger(self, jobs: dict[str, str]) -> Any:
        """The wait for ``jobs``, until ``refill_after`` of them end, all do, or the earliest job's
        deadline."""
        from airflow_provider_hitpaw.triggers.jobs import HitPawJobsTrigger

        now = time.time()
        deadlines = []
        for job_id, key in jobs.items():
            entry = self.state.items[key]
            if not self._this_attempt(entry):  # a job of an earlier try or run: a fresh deadline for this try
                self._write({"item": key, "event": records.SUBMITTED, "job_id": job_id, "repoll": True,
                             "deadline": now + self.op.timeout, "source": entry.get("source"),
                             "model": entry.get("model")})
                entry = self.state.items[key]
            deadlines.append(float(entry.get("deadline") or now + self.op.timeout))
        fire_after = min(self.op.refill_after, len(jobs)) if self.has_more_to_submit() else len(jobs)
        return HitPawJobsTrigger(
            job_ids=list(jobs),
            deadline=min(deadlines),
            fire_after=fire_after,
            hitpaw_conn_id=self.op.hitpaw_conn_id,
            poll_interval=self.op.poll_interval,
        )

    def record_ended(self, event: dict[str, Any]) -> int:
        """Save or record every job the event says ended; return how many."""
        jobs = self.jobs_to_poll()
        ended = 0
        for job_id, result in ended_jobs_from_event(event):
            key = jobs.get(job_id)
            if key is None:
                continue
            ended += 1
            entry = self.state.items[key]
            base = {"item": key, "job_id": job_id, "source": entry.get("source"), "model": entry.get("model")}
            if isinstance(result, CompletedJob):
                self._save(base, result)
            elif isinstance(result, HitPawJobFailedError):
                self._write({**base, "event": records.FAILED, "hitpaw_status": result.job_status,
                             **_error_fields(result)})
            elif isinstance(result, HitPawTaskNotFoundError):
                self._write({**base, "event": records.FAILED, **_error_fields(result)})
            else:
                self._write({**base, "event": records.STALLED, "reason": outcomes.STATUS_FAILED, **_error_fields(result)})
        if event.get("timed_out"):
            now = time.time()
            for job_id, key in self.jobs_to_poll().items():
                entry = self.state.items[key]
                if float(entry.get("deadline") or 0) <= now:
                    self._write({"item": key, "job_id": job_id, "event": records.STALLED, "reason": outcomes.TIMED_OUT,
                                 "source": entry.get("source"), "model": entry.get("model")})
        return ended

    def _save(self, base: dict[str, Any], completed: CompletedJob) -> None:
        try:
            written = self.hook.download_result(
                completed.res_url, folder_destination(self.op.output_path),
                job_id=completed.job_id, source_url=str(base["source"]),
            )
        except Exception as err:
            self.log.error("HitPaw job %s completed but its result could not be saved (%s); it is at %s, "
                           "kept by HitPaw for 8 days: a retry of this task saves it without paying again",
                           completed.job_id, err, completed.res_url.split("?")[0])
            self._write({**base, "event": records.STALLED, "reason": outcomes.SAVE_FAILED, **_error_fields(err)})
            return
        name = written.rsplit("/", 1)[-1]
        self._write({**base, "event": records.DONE, "hitpaw_status": completed.hitpaw_status, "output": name})

    # --- the end -------------------------------------------------------------------------------------------

    def _outcome(self, key: str) -> str:
        if key in self.left_out:
            return self.left_out[key]
        if self._needs_submission(key):  # submissions of this attempt were stopped before it
            stopped = self.state.stops.get((self.run, self.try_number))
            return outcomes.SKIPPED_BUDGET if stopped == NO_COINS else outcomes.NOT_SUBMITTED
        entry = self.state.items.get(key)
        if entry is None:
            return outcomes.NOT_SUBMITTED
        event = entry.get("event")
        if event == records.DONE:
            return outcomes.ENHANCED if entry.get("run") == self.run else outcomes.EXISTING
        if event == records.FAILED:
            return outcomes.FAILED
        if event == records.REFUSED:
            return outcomes.REFUSED
        if event in (records.INTENT, records.UNKNOWN):
            return outcomes.UNKNOWN_OUTCOME
        if event == records.STALLED:
            return str(entry.get("reason") or outcomes.TIMED_OUT)
        return outcomes.TIMED_OUT

    def finish(self) -> dict[str, Any]:
        rows = []
        for item, key in zip(self.items, self.keys, strict=True):
            entry = self.state.items.get(key) or {}
            outcome = self._outcome(key)
            rows.append({
                "source": item.source,
                "item": key,
                "outcome": outcome,
                "job_id": entry.get("job_id"),
                "hitpaw_status": entry.get("hitpaw_status"),
                "coins": int(entry.get("coins_by_run", {}).get(self.run, 0)),
                "output": entry.get("output") if outcome in (outcomes.ENHANCED, outcomes.EXISTING) else None,
                "error_class": entry.get("error_class") if outcome not in (outcomes.ENHANCED, outcomes.EXISTING) else None,
                "error_code": entry.get("error_code") if outcome not in (outcomes.ENHANCED, outcomes.EXISTING) else None,
            })
        manifest = write_manifest(self.op.output_path, self.run, rows)
        counts = count_outcomes(rows)
        coins = self.state.coins_spent(self.run)
        summary = {"items": len(rows), "counts": counts, "coins": coins, "manifest": manifest}
        self.log.info("HitPaw batch: %s; %d coins charged to this run; manifest: %s", counts, coins, manifest)
        self._emit_asset_event(summary)
        self._raise_if_failed(rows, counts)
        return summary

    def _emit_asset_event(self, summary: dict[str, Any]) -> None:
        outlet_events = self.context.get("outlet_events")
        if outlet_events is None:
            return
        for outlet in self.op.outlets or ():
            try:
                outlet_events[outlet].extra = {"counts": summary["counts"], "coins": summary["coins"],
                                               "manifest": summary["manifest"]}
            except Exception as err:  # an outlet that is no asset: the batch's result stands
                self.log.warning("Could not set the extra of the asset event of %s: %s", outlet, err)

    def _raise_if_failed(self, rows: list[dict[str, Any]], counts: dict[str, int]) -> None:
        failed = counts.get(outcomes.FAILED, 0) + counts.get(outcomes.REFUSED, 0)
        unresolved = [row for row in rows if row["outcome"] in outcomes.UNRESOLVED]
        too_many = failed > self.op.max_failed_items or (
            self.op.max_failed_fraction is not None and rows and failed / len(rows) > self.op.max_failed_fraction
        )
        if not unresolved and not too_many:
            return
        listed = ", ".join(f"{row['source'][:120]} ({row['outcome']}{', job ' + row['job_id'] if row['job_id'] else ''})"
                           for row in unresolved[:20])
        more = f" and {len(unresolved) - 20} more" if len(unresolved) > 20 else ""
        message = f"HitPaw batch: {counts}."
        if too_many:
            message += f" {failed} items failed or were refused, over max_failed_items={self.op.max_failed_items}"
            if self.op.max_failed_fraction is not None:
                message += f" / max_failed_fraction={self.op.max_failed_fraction}"
            message += "."
        if unresolved:
            message += f" Unresolved: {listed}{more}."
        if counts.get(outcomes.UNKNOWN_OUTCOME):
            message += (" An unknown outcome may have been charged; it is never resubmitted unless "
                        "on_unknown_outcome='resubmit' (with max_unknown_outcome_coins).")
        message += " A retry polls recorded jobs, saves what is missing and resubmits only failed items."
        raise HitPawBatchError(message, counts=counts)


def output_asset(output_path: Any) -> Any:
    """The asset a batch's ``output_path`` stands for (the task's outlet)."""
    from airflow.sdk import Asset

    local = local_folder(output_path)
    uri = local.absolute().as_uri() if local is not None else str(output_path)
    return Asset(uri=uri.rstrip("/") + "/")


def _error_fields(err: BaseException) -> dict[str, Any]:
    return {
        "error_class": type(err).__name__,
        "error_code": getattr(err, "code", None),
        "message": str(err)[:500],
    }


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HitPawValidationError(f"{name} must be a whole number of at least 1, got {value!r}")
    return value


def _non_negative_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HitPawValidationError(f"{name} must be a whole number of at least 0, got {value!r}")
    return value
