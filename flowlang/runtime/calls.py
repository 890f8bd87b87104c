"""Calling a host's handler with a time limit.

Python cannot stop a thread, so a handler that hangs is left behind on its own
daemon thread and the next call gets a fresh one; the caller gets
`HandlerTimeout` after the limit, and the action counts as failed.
"""
from __future__ import annotations

import queue
import threading


class HandlerTimeout(Exception):
    """The handler did not return within its time limit."""


class TimedCaller:
    def __init__(self):
        self._jobs: queue.SimpleQueue | None = None

    def _worker(self) -> queue.SimpleQueue:
        if self._jobs is None:
            jobs: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(jobs,), daemon=True,
                             name="flowlang-handler").start()
            self._jobs = jobs
        return self._jobs

    def call(self, function, argument, timeout: float):
        answer: queue.SimpleQueue = queue.SimpleQueue()
        self._worker().put((function, argument, answer))
        try:
            ok, value = answer.get(timeout=timeout)
        except queue.Empty:
            self._jobs = None  # that thread is stuck in the handler: leave it
            raise HandlerTimeout(f"the handler did not return within {timeout:g} s") from None
        if not ok:
            raise value
        return value


def _serve(jobs: queue.SimpleQueue) -> None:
    while True:
        function, argument, answer = jobs.get()
        try:
            answer.put((True, function(argument)))
        except BaseException as e:  # handed to the caller, who decides
            answer.put((False, e))
