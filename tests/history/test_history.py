"""Session history: durable appends, listing, lookup, export, and kill -9 safety."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from voicecli.history import (
    History,
    HistoryError,
    SessionLog,
    read_session,
    summary,
    to_json,
    to_markdown,
)
from voicecli.secrets import REDACTED, register_secret

T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z, a fixed clock for names


def make_session(data_dir: Path, now: float, turns: list[dict[str, Any]], **kw: Any) -> SessionLog:
    log = SessionLog.create(data_dir, now=now, endpoint="ws://127.0.0.1:1/v1/realtime", **kw)
    for turn in turns:
        log.append_turn(turn)
    log.close()
    return log


def test_create_writes_private_header(tmp_path: Path) -> None:
    with SessionLog.create(tmp_path, model="gpt-realtime", now=T0, extra={"voice": "marin"}) as log:
        assert log.path.parent == tmp_path / "sessions"
        assert log.path.name == f"20251124T160000Z_{log.session_id}.jsonl"
        header = json.loads(log.path.read_text(encoding="utf-8").splitlines()[0])
        assert header["kind"] == "header"
        assert header["session_id"] == log.session_id
        assert header["model"] == "gpt-realtime" and header["voice"] == "marin"
        assert header["started"].startswith("2025-11-24T16:00:00")
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.path.parent.stat().st_mode) == 0o700
    with pytest.raises(ValueError, match="closed"):
        log.append_turn({"role": "user", "text": "late"})


def test_append_turn_is_fsynced_before_returning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SessionLog.create(tmp_path)
    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        # what is on disk at fsync time: the file's size must already include the line
        synced.append((fd, os.fstat(fd).st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    size_before = log.path.stat().st_size
    log.append_turn({"role": "user", "item_id": "item_1", "text": "héllo"})
    assert len(synced) == 1
    _fd, size_at_sync = synced[0]
    assert size_at_sync == log.path.stat().st_size > size_before
    assert log.turns == 1
    log.append({"event": "reconnected"})
    assert len(synced) == 2 and log.turns == 1
    log.close()
    record = read_session(log.path)
    assert [t["text"] for t in record.turns] == ["héllo"]
    assert record.turns[0]["kind"] == "turn" and "time" in record.turns[0]


def test_secrets_are_redacted_on_disk(tmp_path: Path) -> None:
    secret = "sk-test-HISTORY-secret-42"
    register_secret(secret)
    log = make_session(tmp_path, T0, [{"role": "user", "text": f"my key is {secret}"}])
    text = log.path.read_text(encoding="utf-8")
    assert secret not in text and REDACTED in text


def test_listing_is_newest_first(tmp_path: Path) -> None:
    assert History(tmp_path).list_sessions() == []
    old = make_session(tmp_path, T0, [{"role": "user", "text": "first"}])
    new = make_session(tmp_path, T0 + 3600, [{"role": "user", "text": "second"}], kind="ask")
    mid = make_session(tmp_path, T0 + 60, [])
    (tmp_path / "sessions" / "notes.txt").write_text("not a session", encoding="utf-8")
    records = History(tmp_path).list_sessions()
    assert [r.path for r in records] == [new.path, mid.path, old.path]
    s = summary(records[0])
    assert s["type"] == "ask" and s["turns"] == 1 and s["first"] == "second"
    assert s["session_id"] == new.session_id


def test_lookup_by_prefix(tmp_path: Path) -> None:
    a = make_session(tmp_path, T0, [])
    b = make_session(tmp_path, T0 + 86_400, [])
    h = History(tmp_path)
    assert h.find(a.session_id).path == a.path
    assert h.find(a.session_id[:-1]).path == a.path  # an id prefix
    assert h.find(a.path.name[: -len(".jsonl")]).path == a.path
    assert h.find("20251125").path == b.path  # a date prefix of the file name
    with pytest.raises(HistoryError, match="matches 2 sessions"):
        h.find("2025112")
    with pytest.raises(HistoryError, match="no session matches"):
        h.find("zzzz")
    with pytest.raises(HistoryError, match="no session given"):
        h.find("  ")


def test_export_markdown_and_json(tmp_path: Path) -> None:
    turns = [
        {
            "role": "user",
            "item_id": "i1",
            "text": "What is 2+2?",
            "time": "2025-11-24T16:00:01+00:00",
        },
        {
            "role": "assistant",
            "item_id": "i2",
            "text": "Four, and here is why...",
            "heard": "Four, and",
            "unheard": "here is why...",
            "usage": {"input_tokens": 10, "output_tokens": 5},
        },
        {"type": "function_call", "role": "assistant", "name": "clock", "arguments": "{}"},
        {"role": "user", "item_id": "i3", "text": ""},
    ]
    log = make_session(tmp_path, T0, turns, model="gpt-realtime")
    h = History(tmp_path)
    md = h.export(log.session_id, "md")
    assert md.startswith(f"# voicecli session {log.path.name[:-6]}\n")
    assert "- model: gpt-realtime" in md
    assert "**You** (16:00:01): What is 2+2?" in md
    assert "**Assistant**" in md and "Four, and ~~here is why...~~ *(interrupted)*" in md
    assert "`clock({})`" in md
    assert "*(no transcript)*" in md
    data = json.loads(h.export(log.session_id, "json"))
    assert data["header"]["session_id"] == log.session_id
    assert [t.get("item_id") for t in data["turns"]] == ["i1", "i2", None, "i3"]
    assert summary(read_session(log.path))["tokens"] == 15
    record = read_session(log.path)
    assert to_json(record) == h.export(log.session_id, "json")
    assert to_markdown(record) == md
    with pytest.raises(HistoryError, match="unknown export format"):
        h.export(log.session_id, "html")  # type: ignore[arg-type]


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    log = make_session(tmp_path, T0, [{"role": "user", "text": "kept"}])
    with open(log.path, "a", encoding="utf-8") as f:
        f.write('{"kind": "turn", "role": "assist')
    record = read_session(log.path)
    assert [t["text"] for t in record.turns] == ["kept"]
    assert record.skipped_lines == 1


# --- kill -9 ----------------------------------------------------------------------------

WRITER = r"""
import sys
from voicecli.history import SessionLog
log = SessionLog.create(sys.argv[1])
print(log.path, flush=True)
i = 0
while True:
    i += 1
    # sizes vary from a word to a few KB, with non-ASCII text
    log.append_turn({"role": "user" if i % 2 else "assistant", "item_id": f"item_{i}",
                     "text": f"turn {i} " + "é—x" * (i * 37 % 1500)})
    print(i, flush=True)
"""


def test_kill_minus_9_never_loses_a_reported_turn(tmp_path: Path) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    totals = []
    torn = 0
    for run in range(20):
        data_dir = tmp_path / f"run{run}"
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(data_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        path = Path(proc.stdout.readline().strip())
        # let it write for a random while, then kill it wherever it is
        deadline = time.monotonic() + rng.uniform(0.0, 0.25)
        reported = 0
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported = int(line)
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()  # turns reported after our last look also count
        proc.wait()
        proc.stdout.close()
        numbers = [int(x) for x in rest.split()]
        if numbers:
            reported = numbers[-1]
        raw = path.read_bytes()
        complete, _, tail = raw.rpartition(b"\n")
        parsed = [json.loads(line) for line in complete.split(b"\n")]  # every line parses
        assert parsed[0]["kind"] == "header"
        ids = [p["item_id"] for p in parsed if p["kind"] == "turn"]
        assert ids[:reported] == [f"item_{i}" for i in range(1, reported + 1)], f"seed {seed}"
        assert len(ids) in (reported, reported + 1), f"seed {seed}"  # one may be unreported
        if tail:  # a line torn by the kill: only ever the turn that was never reported
            torn += 1
            assert len(ids) == reported, f"seed {seed}"
            assert tail.startswith(b'{"kind": "turn"')
        record = read_session(path)  # the reader copes with the torn tail
        assert [t["item_id"] for t in record.turns] == ids
        assert record.skipped_lines == (1 if tail else 0)
        totals.append(reported)
    print(f"kill -9 runs: {len(totals)}, turns per run {min(totals)}-{max(totals)}, torn {torn}")
    assert max(totals) > 0, "the writer never got to write"
