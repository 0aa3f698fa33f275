"""`twin-ops services airflow` (what `make airflow` runs): SIGTERM stops every process Airflow
standalone started, LocalExecutor workers included — none is left re-parented to init."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import psutil

from tests.conftest import BIN

PARALLELISM = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def session(leader: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == leader:
                found.append(process)
        except (OSError, psutil.Error):
            continue
    return found


def test_sigterm_stops_standalone_and_every_process_it_started(airflow_env, tmp_path):
    env = {
        **airflow_env,
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # start no cron runs: only the processes count here
    }
    command = ["services", "airflow", "--port", str(free_port()), "--set", f"airflow.parallelism={PARALLELISM}"]
    log = tmp_path / "standalone.log"
    with log.open("w") as out:
        wrapper = subprocess.Popen(
            [str(BIN / "twin-ops"), *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 300  # a busy 2-core machine
            leader = None
            # Up far enough that the scheduler has started its LocalExecutor workers.
            while time.monotonic() < deadline:
                assert wrapper.poll() is None, log.read_text()[-3000:]
                children = psutil.Process(wrapper.pid).children()
                leader = children[0].pid if children else None
                schedulers = [p for p in session(leader) if "scheduler" in " ".join(p.cmdline())] if leader else []
                if any(len(p.children()) >= PARALLELISM for p in schedulers):  # its LocalExecutor workers
                    break
                time.sleep(2)
            else:
                raise AssertionError(f"standalone did not start its processes:\n{log.read_text()[-3000:]}")
            started = len(session(leader))
            wrapper.send_signal(signal.SIGTERM)
            assert wrapper.wait(timeout=90) == 0, log.read_text()[-3000:]
        finally:
            if wrapper.poll() is None:  # the test failed half-way: still let the wrapper clean up
                wrapper.send_signal(signal.SIGTERM)
                try:
                    wrapper.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    wrapper.kill()
    left = [" ".join(p.cmdline()) for p in session(leader) if p.is_running()]
    assert left == [], f"{len(left)} of {started} processes survived: {left}"
