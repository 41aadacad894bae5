"""The ``hitpaw_sandbox`` fixture users get from the package's pytest plugin: a user's test file, run by
pytest in a process of its own, uses it to run the hook against the sandbox."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TEST = '''
import pytest
from airflow_provider_hitpaw.hooks.hitpaw import HitPawHook
from airflow_provider_hitpaw.errors import HitPawInsufficientCoinsError


def test_default(hitpaw_sandbox, tmp_path):
    hook = HitPawHook()  # hitpaw_default points at the sandbox
    job = hook.enhance_photo(hitpaw_sandbox.url("/samples/portrait.jpg"), "face_2x", ".jpg")
    status = hook.wait_for_completion(job.job_id, poll_interval=1, timeout=30)
    path = hook.download_result(status.res_url, tmp_path / "out.jpg")
    assert open(path, "rb").read(2) == b"\\xff\\xd8"
    assert sum(hitpaw_sandbox.stats()["coins_charged_by_key"].values()) == job.consume_coins


@pytest.mark.hitpaw_sandbox(coins=0, conn_id="hitpaw_poor")
def test_marker(hitpaw_sandbox):
    assert hitpaw_sandbox.conn_id == "hitpaw_poor"
    with pytest.raises(HitPawInsufficientCoinsError):
        HitPawHook("hitpaw_poor").enhance_photo(hitpaw_sandbox.url("/samples/portrait.jpg"), "face_2x", ".jpg")
'''


def test_a_user_test_uses_the_fixture(pytester: pytest.Pytester):
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
