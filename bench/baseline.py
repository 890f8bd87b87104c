"""The reference flow (`../shared/bench/reference.flow`) written by hand as a
plain-Python loop: the practical limit an interpreter of the same flow can hope
to approach (DESIGN §10).

One `__slots__` object per participant, the flow's states as small ints, a heapq
of (wake time, sequence, participant) timers (stale entries skipped when popped),
and every action recorded as a small tuple (participant, step, action, time,
text), the same tuple the flowlang benchmark records from its handler, `text`
being the action's rendered template (the email's subject, the sms text, the
followup's title; None for actions without one), rendered here with f-strings.
It makes the same decisions and passes the same states as the compiled flow:

    send email "Welcome" -> wait 3 days -> split "Score"
      Hot (score >= 50): create followup -> add to selection "Hot" -> complete
      otherwise: send sms (skipped without a mobile) -> wait for clicked link offer
                 within 7 days else exit -> update person (score + 10) -> complete

A participant-step is one state passed, as in a flowlang participant's `path`;
a time-out that exits passes no state (it finishes where it waited).
"""
from __future__ import annotations

import datetime as dt
from heapq import heappop, heappush

# the flow's states
SEND_EMAIL, WAIT_3_DAYS, SPLIT, FOLLOWUP, ADD_HOT, COMPLETE_HOT, SEND_SMS, WAIT_CLICK, \
    UPDATE, COMPLETE = range(10)
#: the step names used in the action tuples (the flowlang ids of the same states)
STEP_NAMES = ("send-email-welcome", "wait-3-days", "split-score", "followup", "add-to-selection-hot",
              "complete", "send-sms", "wait-for-clicked-link-offer", "update-person", "complete")

THREE_DAYS = dt.timedelta(days=3)
SEVEN_DAYS = dt.timedelta(days=7)

ACTIVE, COMPLETED, DROPOUT = "active", "completed", "dropout"


class Person:
    __slots__ = ("id", "first_name", "score", "mobile", "selections", "status", "state", "wake",
                 "steps")

    def __init__(self, pid: str, data: dict):
        self.id = pid
        self.first_name = data.get("first_name")
        self.score = data.get("score")
        self.mobile = data.get("mobile")
        self.selections = ()
        self.status = ACTIVE
        self.state = SEND_EMAIL
        self.wake = None
        self.steps = 0


class Baseline:
    """The flow's interpreter, by hand. `emit` receives each action tuple (a
    list's `append` by default: `self.actions`)."""

    def __init__(self, start: dt.datetime, emit=None):
        self.now = start
        self.people: dict[str, Person] = {}
        self.timers: list = []
        self.seq = 0
        self.actions: list[tuple] = []
        self.emit = emit if emit is not None else self.actions.append
        self.steps = 0

    # ------------------------------------------------------------------ moving
    def _go(self, p: Person, state: int) -> None:
        """Pass states from `state` until the participant rests or finishes."""
        now = self.now
        emit = self.emit
        steps = 0
        while True:
            steps += 1
            if state == SEND_EMAIL:
                emit((p.id, "send-email-welcome", "send email", now, f"Welcome, {p.first_name}"))
                state = WAIT_3_DAYS
            elif state == WAIT_3_DAYS:
                p.state = state
                p.wake = wake = now + THREE_DAYS
                self.seq += 1
                heappush(self.timers, (wake, self.seq, p))
                break
            elif state == SPLIT:
                score = p.score
                state = FOLLOWUP if score is not None and score >= 50 else SEND_SMS
            elif state == FOLLOWUP:
                emit((p.id, "followup", "create followup", now, f"Call {p.first_name}"))
                state = ADD_HOT
            elif state == ADD_HOT:
                emit((p.id, "add-to-selection-hot", "add to selection", now, None))
                if "Hot" not in p.selections:
                    p.selections = p.selections + ("Hot",)
                state = COMPLETE_HOT
            elif state == SEND_SMS:
                if p.mobile:
                    emit((p.id, "send-sms", "send sms", now,
                          f"Hi {p.first_name}, see our offer."))
                state = WAIT_CLICK
            elif state == WAIT_CLICK:
                p.state = state
                p.wake = wake = now + SEVEN_DAYS
                self.seq += 1
                heappush(self.timers, (wake, self.seq, p))
                break
            elif state == UPDATE:
                emit((p.id, "update-person", "update person", now, None))
                p.score = (p.score or 0) + 10
                state = COMPLETE
            else:  # COMPLETE_HOT, COMPLETE
                p.status = COMPLETED
                p.state = None
                p.wake = None
                break
        p.steps += steps
        self.steps += steps

    # ------------------------------------------------------------------ the host's calls
    def enroll(self, pid: str, data: dict) -> None:
        p = Person(pid, data)
        self.people[pid] = p
        self._go(p, SEND_EMAIL)

    def enroll_many(self, people) -> None:
        for pid, data in people:
            self.enroll(pid, data)

    def click(self, pid: str, link: str) -> bool:
        """A `link.clicked` event: moves a participant waiting for that link on."""
        p = self.people.get(pid)
        if p is None or p.status != ACTIVE:
            return False
        if p.state == WAIT_CLICK and link == "offer":
            p.wake = None
            self._go(p, UPDATE)
        return True

    def run_until(self, when: dt.datetime) -> None:
        """Fire every timer due up to `when`, in time order."""
        timers = self.timers
        while timers and timers[0][0] <= when:
            wake, _, p = heappop(timers)
            if p.wake != wake or p.status != ACTIVE:
                continue  # stale: the participant moved on
            self.now = wake
            p.wake = None
            if p.state == WAIT_3_DAYS:
                self._go(p, SPLIT)
            else:  # WAIT_CLICK timed out: else exit
                p.status = DROPOUT
                p.state = None
        if when > self.now:
            self.now = when

    # ------------------------------------------------------------------ results
    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.people.values():
            out[p.status] = out.get(p.status, 0) + 1
        return out

    def participant_statuses(self):
        """(participant, status) for everyone."""
        return ((pid, p.status) for pid, p in self.people.items())
