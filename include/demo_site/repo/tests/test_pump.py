import json

import pytest

from bilge_pump.cli import main
from bilge_pump.pump import FileQueue, Job, MemoryQueue, Pump

NOW = 1_700_000_000.0


def make_queue():
    return MemoryQueue([
        Job("fresh", "running", heartbeat_at=NOW - 30),
        Job("stuck", "running", heartbeat_at=NOW - 3600),
        Job("tired", "running", heartbeat_at=NOW - 3600, attempts=2),
        Job("done", "done", heartbeat_at=NOW - 86400),
    ])


def test_survey_changes_nothing():
    queue = make_queue()
    verdicts = {v.job_id: v.action for v in Pump(queue).survey(now=NOW)}
    assert verdicts == {"fresh": "leave", "stuck": "requeue", "tired": "bury"}
    assert queue.jobs["stuck"].state == "running"


def test_pump_requeues_and_buries():
    queue = make_queue()
    Pump(queue).pump(now=NOW)
    assert queue.jobs["stuck"].state == "queued" and queue.jobs["stuck"].attempts == 1
    assert queue.jobs["tired"].state == "buried"
    assert queue.jobs["fresh"].state == "running"
    assert queue.jobs["stuck"].notes[-1].startswith("bilge-pump requeue")


def test_refuses_a_flood():
    queue = MemoryQueue(Job(f"j{i}", "running", heartbeat_at=NOW - 9999) for i in range(10))
    with pytest.raises(RuntimeError, match="find the leak|look for the leak"):
        Pump(queue, max_per_run=5).pump(now=NOW)
    assert all(j.state == "running" for j in queue.jobs.values())


def test_file_queue_round_trip_and_cli(tmp_path):
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"jobs": [{"id": "a", "state": "running", "heartbeat_at": 0}]}))
    assert main(["pump", "--queue", str(path), "--dry-run"]) == 1
    assert FileQueue(path).jobs["a"].state == "running"
    assert main(["pump", "--queue", str(path)]) == 1
    assert FileQueue(path).jobs["a"].state == "queued"


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        Pump(MemoryQueue(), stale_after=0)
