"""The spool: whole lines in order across segments, a committed position that survives a
restart, a size limit that refuses like a full disk, a torn last line cut on reopening."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from registry_sync.history.spool import Spool


def _lines(n: int, start: int = 0) -> bytes:
    return b"".join(b'{"request_id":"r-%d"}\n' % i for i in range(start, start + n))


def _drain(spool: Spool) -> bytes:
    got = b""
    while (found := spool.read(64)) is not None:
        position, data = found
        got += data
        spool.commit(position)
    return got


def test_lines_come_back_in_order_across_segments_and_shipped_segments_go(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100)
    for i in range(0, 30, 5):
        spool.append(_lines(5, i))
    assert len(list(tmp_path.glob("*.jsonl"))) > 2
    assert _drain(spool) == _lines(30)
    assert spool.pending_bytes() == 0
    assert len(list(tmp_path.glob("*.jsonl"))) == 1  # only the one being written


def test_the_committed_position_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100)
    spool.append(_lines(10))
    found = spool.read(40)
    assert found is not None
    spool.commit(found[0])
    spool.close()
    again = Spool(tmp_path, segment_bytes=100)
    assert found[1] + _drain(again) == _lines(10)


def test_past_max_bytes_a_batch_is_refused_like_a_full_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    spool.append(_lines(10))  # an empty spool takes any batch, even one over the limit
    with pytest.raises(OSError) as full:
        spool.append(_lines(1, 10))
    assert full.value.errno == errno.ENOSPC
    _drain(spool)
    spool.append(_lines(1, 10))  # shipped: room again


def test_a_torn_last_line_is_cut_when_the_spool_reopens(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(_lines(2))
    spool.close()
    segment = next(tmp_path.glob("*.jsonl"))
    with segment.open("ab") as f:
        f.write(b'{"request_id":"r-')  # a process killed in the middle of a write
    again = Spool(tmp_path)
    again.append(_lines(1, 2))
    assert _drain(again) == _lines(3)
