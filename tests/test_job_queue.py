"""The tray's job queue on its own, with real threads: order, capacity, cancel of a waiting and a running job."""

from __future__ import annotations

import threading
import time

import pytest

from dreamtray.desktop.job_queue import Entry, JobQueue, NoSuchJob, State

WAIT = 10  # seconds any step may take before the test fails (never a timing assertion)


class Worker:
    """Runs jobs one by one; each job blocks until the test lets it finish, so the queue's state is known."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.release: dict[str, threading.Event] = {}
        self.running = threading.Semaphore(0)
        self.stopped: list[str] = []

    def __call__(self, entry: Entry[str]) -> None:
        name = entry.item
        self.started.append(name)
        gate = self.release.setdefault(name, threading.Event())
        self.running.release()
        assert gate.wait(WAIT), f"{name} was never let go"
        self.finished.append(name)

    def wait_started(self) -> None:
        assert self.running.acquire(timeout=WAIT), "no job started"

    def let_go(self, name: str) -> None:
        self.release.setdefault(name, threading.Event()).set()


def add(line: JobQueue[str], name: str) -> Entry[str]:
    entry = line.reserve()
    assert entry is not None, f"{name} found the queue full"
    line.fill(entry, name)
    return entry


def wait_empty(line: JobQueue[str]) -> None:
    deadline = time.monotonic() + WAIT
    while line.pending:
        assert time.monotonic() < deadline, "the queue never emptied"
        time.sleep(0.01)


@pytest.fixture
def worker():
    return Worker()


@pytest.fixture
def line(worker):
    changes = threading.Semaphore(0)
    queue: JobQueue[str] = JobQueue(worker, capacity=3, on_change=changes.release)
    queue.changes = changes  # type: ignore[attr-defined]
    yield queue
    for name in list(worker.release) + ["a", "b", "c", "d"]:
        worker.let_go(name)
    queue.close()


def test_jobs_run_in_the_order_they_came_and_the_queue_lists_them(line, worker):
    add(line, "a")
    worker.wait_started()
    add(line, "b")
    add(line, "c")
    assert [(s.number, s.state, s.item) for s in line.entries()] == [
        (1, State.RUNNING, "a"),
        (2, State.WAITING, "b"),
        (3, State.WAITING, "c"),
    ]
    for name in "abc":
        worker.let_go(name)
    wait_empty(line)
    assert worker.finished == ["a", "b", "c"]


def test_a_full_queue_turns_the_next_job_away_until_a_place_frees(line, worker):
    add(line, "a")
    worker.wait_started()
    add(line, "b")
    add(line, "c")
    assert line.reserve() is None and line.pending == 3
    worker.let_go("a")
    worker.wait_started()
    assert line.pending == 2
    entry = line.reserve()
    assert entry is not None and entry.number == 4
    line.release(entry)
    assert line.pending == 2


def test_a_reserved_place_counts_but_is_not_listed(line, worker):
    entry = line.reserve()
    assert line.pending == 1 and line.entries() == []
    line.fill(entry, "a")
    worker.wait_started()
    assert [s.item for s in line.entries()] == ["a"]


def test_cancel_a_waiting_job_removes_it_and_it_never_runs(line, worker):
    add(line, "a")
    worker.wait_started()
    add(line, "b")
    add(line, "c")
    assert line.cancel(2) is State.WAITING
    assert [s.item for s in line.entries()] == ["a", "c"]
    worker.let_go("a")
    worker.let_go("c")
    wait_empty(line)
    assert worker.started == ["a", "c"]


def test_cancel_the_running_job_calls_its_stop(line, worker):
    entry = add(line, "a")
    worker.wait_started()
    stopped = threading.Event()
    line.attach(entry, stopped.set)
    assert line.cancel(1) is State.RUNNING
    assert stopped.is_set()
    assert [s.cancelled for s in line.entries()] == [True]


def test_a_cancel_before_the_job_reached_the_engine_stops_it_when_it_does(line, worker):
    entry = add(line, "a")
    worker.wait_started()
    assert line.cancel(1) is State.RUNNING
    stopped = threading.Event()
    line.attach(entry, stopped.set)
    assert stopped.is_set()


def test_cancel_an_unknown_number_says_so(line):
    with pytest.raises(NoSuchJob, match="No job #7 is running or waiting"):
        line.cancel(7)


def test_progress_and_changes_are_told(line, worker):
    entry = add(line, "a")
    worker.wait_started()
    while line.changes.acquire(timeout=0):
        pass
    line.progress(entry, 40)
    assert line.changes.acquire(timeout=WAIT)
    line.progress(entry, 40)  # no change, nothing told
    assert not line.changes.acquire(timeout=0)
    assert line.entries()[0].percent == 40


def test_close_returns_the_waiting_jobs_that_never_ran(line, worker):
    add(line, "a")
    worker.wait_started()
    add(line, "b")
    left: list[Entry[str]] = []
    closing = threading.Thread(target=lambda: left.extend(line.close()))
    closing.start()
    while line.pending != 1:  # b leaves the queue at once; a runs on
        closing.join(0.01)
    assert line.reserve() is None
    worker.let_go("a")
    closing.join(WAIT)
    assert [e.item for e in left] == ["b"] and worker.started == ["a"]


def test_a_queue_holds_at_least_one_job(worker):
    with pytest.raises(ValueError, match="at least one job"):
        JobQueue(worker, capacity=0)


def test_a_failing_job_does_not_stop_the_queue():
    done: list[str] = []

    def work(entry: Entry[str]) -> None:
        if entry.item == "boom":
            raise RuntimeError("boom")
        done.append(entry.item)

    line: JobQueue[str] = JobQueue(work)
    add(line, "boom")
    add(line, "after")
    wait_empty(line)
    assert done == ["after"]
    line.close()
