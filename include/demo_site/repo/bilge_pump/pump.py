"""The pump itself.

A job queue takes on water the way a boat does: slowly, quietly, and mostly
where you are not looking. A worker dies mid-job, its lease never expires, and
the job sits in "running" forever. This module finds those jobs and decides
what to do with each one: put it back in the queue, or set it aside for a human.

Nothing here is clever. That is the point.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Protocol


@dataclass
class Job:
    """One job, as the pump sees it. Only the fields it needs to judge it."""

    id: str
    state: str                      # "queued", "running", "done", "buried"
    heartbeat_at: float             # unix seconds of the last sign of life
    attempts: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    """What the pump decided about one job, and why. Written down before acting."""

    job_id: str
    action: str                     # "leave", "requeue", "bury"
    reason: str


class Queue(Protocol):
    """The three things a queue must let us do. Anything else is not our business."""

    def running(self) -> Iterable[Job]: ...
    def requeue(self, job_id: str, note: str) -> None: ...
    def bury(self, job_id: str, note: str) -> None: ...


class MemoryQueue:
    """A queue that lives in a dict. For tests, and for thinking out loud."""

    def __init__(self, jobs: Iterable[Job] = ()):
        self.jobs = {job.id: job for job in jobs}

    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state == "running"]

    def requeue(self, job_id: str, note: str) -> None:
        job = self.jobs[job_id]
        job.state, job.attempts = "queued", job.attempts + 1
        job.notes.append(note)

    def bury(self, job_id: str, note: str) -> None:
        job = self.jobs[job_id]
        job.state = "buried"
        job.notes.append(note)


class FileQueue(MemoryQueue):
    """A queue kept in a JSON file: {"jobs": [{...}, ...]}. Saved after each change."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        data = json.loads(self.path.read_text()) if self.path.exists() else {"jobs": []}
        super().__init__(Job(**raw) for raw in data.get("jobs", []))

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"jobs": [asdict(j) for j in self.jobs.values()]}, indent=2))
        tmp.replace(self.path)      # atomic on one filesystem; half a file is worse than none

    def requeue(self, job_id: str, note: str) -> None:
        super().requeue(job_id, note)
        self._save()

    def bury(self, job_id: str, note: str) -> None:
        super().bury(job_id, note)
        self._save()


class Pump:
    """Decides, then acts. Never the other way round.

    stale_after:  seconds without a heartbeat before a running job counts as stuck.
    max_attempts: how many times a job may be put back before a human must look.
    max_per_run:  the most jobs pumped in one pass; a flood is a symptom, not a chore.
    """

    def __init__(self, queue: Queue, stale_after: float = 900.0,
                 max_attempts: int = 3, max_per_run: int = 50):
        if stale_after <= 0 or max_attempts < 1 or max_per_run < 1:
            raise ValueError("stale_after, max_attempts and max_per_run must be positive")
        self.queue = queue
        self.stale_after = stale_after
        self.max_attempts = max_attempts
        self.max_per_run = max_per_run

    def survey(self, now: float | None = None) -> list[Verdict]:
        """Look in the bilge and say what you see. Changes nothing."""
        now = time.time() if now is None else now
        verdicts = []
        for job in sorted(self.queue.running(), key=lambda j: j.heartbeat_at):
            quiet_for = now - job.heartbeat_at
            if quiet_for < self.stale_after:
                verdicts.append(Verdict(job.id, "leave", f"heartbeat {quiet_for:.0f}s ago"))
            elif job.attempts + 1 >= self.max_attempts:
                verdicts.append(Verdict(job.id, "bury",
                                        f"stuck {quiet_for:.0f}s after {job.attempts + 1} attempts"))
            else:
                verdicts.append(Verdict(job.id, "requeue", f"no heartbeat for {quiet_for:.0f}s"))
        return verdicts

    def pump(self, now: float | None = None, dry_run: bool = False) -> list[Verdict]:
        """Act on the survey. Refuses to pump more than max_per_run jobs at once.

        If that many jobs are stuck together, something bigger has gone wrong:
        rule one of the yard, find the leak before you buy a bigger pump.
        """
        verdicts = self.survey(now)
        acting = [v for v in verdicts if v.action != "leave"]
        if len(acting) > self.max_per_run:
            raise RuntimeError(f"{len(acting)} stuck jobs exceeds max_per_run={self.max_per_run}; "
                               "look for the leak before pumping")
        if dry_run:
            return verdicts
        for v in acting:
            note = f"bilge-pump {v.action}: {v.reason}"
            if v.action == "requeue":
                self.queue.requeue(v.job_id, note)
            else:
                self.queue.bury(v.job_id, note)
        return verdicts
