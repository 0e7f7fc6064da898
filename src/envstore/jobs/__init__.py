"""Running builds: the Queue protocol, the embedded worker pool and the reaper."""

from envstore.jobs.inprocess import InProcessQueue, Queue

__all__ = ["InProcessQueue", "Queue"]
