"""AuditSinks: a failed write is kept and retried whole and in order, counted, and bounded."""

from __future__ import annotations

import errno

from gateway.telemetry.audit_sinks import AuditSinks


class FlakySink:
    """A sink whose writes fail while `full` is set (as a full disk's do)."""

    def __init__(self) -> None:
        self.data = b""
        self.full = False

    def write(self, data: bytes) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.data += data


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_records_held_through_a_failure_are_written_in_order_when_it_ends() -> None:
    sink, clock = FlakySink(), Clock()
    sinks = AuditSinks([("file", sink.write)], retry_s=1.0, clock=clock)
    sinks.write(b"a\n", 1)
    sink.full = True
    sinks.write(b"b\n", 1)
    assert sinks.failing and not sinks.refusing  # fail_open by default
    assert sinks.write_failures == 1
    assert sinks.last_error == "file: No space left on device"
    sink.full = False
    sinks.write(b"c\n", 1)  # the retry is not due yet: held
    assert sink.data == b"a\n"
    clock.now = 1.0
    sinks.write(b"", 0)
    assert sink.data == b"a\nb\nc\n"
    assert not sinks.failing
    assert sinks.written == 3
    assert sinks.health().state == "ok"
    assert sinks.health().backlog == 0


def test_fail_closed_refuses_until_the_backlog_is_written() -> None:
    sink = FlakySink()
    sinks = AuditSinks([("file", sink.write)], mode="fail_closed")
    sink.full = True
    sinks.write(b"a\n", 1)
    assert sinks.refusing
    assert sinks.health().state == "failing"
    sink.full = False
    sinks.write(b"", 0, force=True)
    assert not sinks.refusing
    assert sink.data == b"a\n"


def test_past_the_limit_new_records_are_dropped_and_counted_and_lost_ones_at_shutdown() -> None:
    sink = FlakySink()
    sinks = AuditSinks([("file", sink.write)], max_records=3)
    sink.full = True
    sinks.write(b"1\n2\n", 2)
    sinks.write(b"3\n", 1, force=True)
    sinks.write(b"4\n5\n", 2, force=True)  # 3 held + 2 > 3
    assert sinks.dropped == 2
    assert sinks.health().backlog == 3
    assert sinks.write_failures == 3
    assert sinks.give_up() == 3
    assert sinks.dropped == 5
    assert sinks.health().backlog == 0


def test_a_second_sink_that_fails_is_retried_without_writing_the_first_twice() -> None:
    file, stdout = FlakySink(), FlakySink()
    sinks = AuditSinks([("file", file.write), ("stdout", stdout.write)])
    stdout.full = True
    sinks.write(b"a\n", 1)
    assert sinks.failing
    stdout.full = False
    sinks.write(b"b\n", 1, force=True)
    assert file.data == stdout.data == b"a\nb\n"
    assert sinks.written == 2
