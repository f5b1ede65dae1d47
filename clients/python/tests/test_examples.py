"""The examples in examples/python still run: a submitter and a worker pool
against the test cluster, as the README shows them."""

from __future__ import annotations

from conftest import REPO, python_script

EXAMPLES = REPO / "examples" / "python"


def test_the_submitter_and_the_worker_pool_drain_a_queue_together(cluster, unique_type):
    endpoints = ",".join(cluster.endpoints)
    common = ["--endpoints", endpoints, "--type", unique_type]
    submitter = python_script(EXAMPLES / "submitter.py", *common, "-n", "6", "--key", unique_type, "--timeout", "60")
    pool = python_script(EXAMPLES / "worker_pool.py", *common, "--workers", "2", "--think", "0.02", "--idle", "2s")
    pool_out, pool_err = pool.communicate(timeout=60)
    sub_out, sub_err = submitter.communicate(timeout=60)
    assert pool.returncode == 0, pool_out + pool_err
    assert submitter.returncode == 0, sub_out + sub_err
    assert "worker pool done: 6 task(s) completed" in pool_out, pool_out
    assert "summary: 6 item(s)" in sub_out and "completed 6" in sub_out, sub_out

    # Again with the same keys: nothing new is submitted.
    again = python_script(EXAMPLES / "submitter.py", *common, "-n", "6", "--key", unique_type, "--poll")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, out + err
    assert out.count("existing ") == 6, out
