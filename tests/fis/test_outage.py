"""StoreOutage: one warning when a store becomes unavailable, one when it answers again (with
how long it was out), whatever the number of calls failing in between; a store that answers
reads but refuses writes does not flap."""

from __future__ import annotations

import logging

import pytest

from fisproxy.fis.outage import StoreOutage, announced, log_failure
from fisproxy.fis.ports import SaveError, StoreUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outage(clock: Clock) -> StoreOutage:
    return StoreOutage("the store (Redis at redis://h:1/0)", clock=clock, settle_seconds=1.0)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_outage_is_one_warning_when_it_starts_and_one_when_it_ends(
        outage: StoreOutage, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    outage.answered()
    assert warnings(caplog) == [] and not outage.down
    for _ in range(600):  # a minute of ticks
        outage.failed(ConnectionRefusedError("Error 111"))
        clock.now += 0.1
    assert outage.down
    assert len(warnings(caplog)) == 1
    assert "is unavailable (Error 111)" in warnings(caplog)[0]
    outage.answered()  # back at 160.0 ...
    clock.now += 0.5
    outage.answered()
    assert len(warnings(caplog)) == 1  # ... but not yet settled
    clock.now += 0.6
    outage.answered()
    lines = warnings(caplog)
    assert len(lines) == 2 and not outage.down
    assert "answers again after 60.0 s unavailable (600 calls failed)" in lines[1]
    outage.answered()
    assert len(warnings(caplog)) == 2


def test_a_store_refusing_writes_but_answering_reads_is_one_outage(
        outage: StoreOutage, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(100):
        outage.answered()  # a read
        outage.failed(RuntimeError("OOM command not allowed"))  # a write
        clock.now += 0.1
    assert outage.down and len(warnings(caplog)) == 1


def test_a_second_outage_is_announced_again(outage: StoreOutage, clock: Clock,
                                            caplog: pytest.LogCaptureFixture) -> None:
    outage.failed(OSError("down"))
    clock.now += 2
    outage.answered()
    clock.now += 5
    outage.failed(OSError("down again"))
    clock.now += 3
    outage.answered()
    clock.now += 1
    outage.answered()
    lines = warnings(caplog)
    assert len(lines) == 4
    assert "after 2.0 s" in lines[1] and "after 3.0 s" in lines[3]


def test_announced_follows_the_cause() -> None:
    down = StoreUnavailable("Redis at redis://h:1/0 is unavailable")
    try:
        raise SaveError("could not save experiment EXP1") from down
    except SaveError as e:
        saved = e
    assert announced(down) and announced(saved)
    assert not announced(SaveError("disk full")) and not announced(None)


def test_log_failure_is_quiet_for_an_announced_outage(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.outage")
    with caplog.at_level(logging.DEBUG, logger="test.outage"):
        log_failure(logger, StoreUnavailable("down"), "could not write the heartbeat")
        log_failure(logger, ValueError("a bug"), "could not write the heartbeat")
    quiet, loud = caplog.records
    assert quiet.levelno == logging.DEBUG and quiet.exc_info is None
    assert loud.levelno == logging.ERROR and loud.exc_info is not None
