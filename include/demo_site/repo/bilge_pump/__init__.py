"""bilge-pump: find jobs that have stopped moving, and pump them out.

Small on purpose. Rule eight of the yard: small boats, short lists.
"""

from bilge_pump.pump import FileQueue, Job, MemoryQueue, Pump, Verdict

__all__ = ["FileQueue", "Job", "MemoryQueue", "Pump", "Verdict"]
__version__ = "0.3.1"
