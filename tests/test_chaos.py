"""The chaos run, small: faulty sandbox, four paths and one dag.test() run, judged from the sandbox's records.

``make chaos`` runs the full one (240 direct tasks and three ``dag.test()`` runs); see ``bench/chaos_run.py``
for the fault rates and for what "correct", "lost" and "unexplained" mean.
"""

from __future__ import annotations

import pytest

from bench.chaos_run import ChaosSettings, dagtest_tasks, format_table, run_chaos


def _assert_targets(verdict) -> None:
    table = format_table(verdict)
    print(table)
    assert all(verdict["targets"].values()), table
    total = verdict["total"]
    assert total.get("correct", 0) == total["tasks"], table
    assert total.get("lost", 0) == 0 and total["unexplained_coins"] == 0 and total.get("past_deadline", 0) == 0, table


def test_chaos_direct_paths_meet_every_target():
    verdict = run_chaos(ChaosSettings(jobs=48, seed=11))
    _assert_targets(verdict)
    rows = verdict["rows"]
    assert set(rows) == {"hook", "trigger", "operator-sync", "operator-deferred"}
    assert sum(verdict["faults_injected"].values()) > 0  # faults really were injected


@pytest.mark.dagtest
def test_chaos_through_dag_test(airflow_db):
    verdict = run_chaos(ChaosSettings(jobs=0, seed=23), extra_tasks=dagtest_tasks(1, airflow_db))
    _assert_targets(verdict)
    assert verdict["total"]["tasks"] == 4
    assert {"dag.test sync", "dag.test deferred"} == set(verdict["rows"])


def test_judge_flags_a_second_submission_and_unexplained_coins():
    """The judge itself: a task that paid twice, or coins no task reports, must not pass."""
    from bench.chaos_run import TaskOutcome, judge

    task = TaskOutcome(name="t", mode="hook", img_url="u", model="face_2x", started=0, ended=1,
                       outcome="success", job_id="j2", coins=10, res_url="http://x/results/j2/r.jpg")
    stats = {"submissions": [{"img_url": "u", "job_id": "j1", "coins": 10},
                             {"img_url": "u", "job_id": "j2", "coins": 10}],
             "coins_charged_by_key": {"k": 20}}
    verdict = judge([task], stats, {"j1": "COMPLETED", "j2": "COMPLETED"}, ChaosSettings())
    assert not verdict["targets"]["all tasks correct"]
    assert not verdict["targets"]["<= 1 submission per task (except failed jobs)"]
    assert not verdict["targets"]["0 unexplained coins"]
    assert not verdict["targets"]["0 results lost"]
