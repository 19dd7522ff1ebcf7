"""The safety event log: JSON lines on disk as soon as they are written, numpy values made plain,
a torn last line skipped when read back."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from slac_robot.safety import EventLog, read_events


def test_each_event_is_one_json_line_on_disk_before_the_log_is_closed(tmp_path):
    path = tmp_path / "run" / "safety_events.jsonl"  # the folder is created
    log = EventLog(path)
    written = log.write("trip", fault={"kind": "velocity", "joints": [2]}, step=7)
    # Already in the file, with the log still open: nothing waits in a buffer.
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event == written
    assert event["kind"] == "trip" and event["step"] == 7 and event["fault"]["joints"] == [2]
    assert event["time_utc"].endswith("+00:00")
    assert isinstance(event["monotonic_s"], float)
    log.write("safe_stop", reason="SIGINT")
    assert [e["kind"] for e in read_events(path)] == ["trip", "safe_stop"]
    log.close()


def test_numpy_values_and_paths_are_written_as_plain_json(tmp_path):
    with EventLog(tmp_path / "events.jsonl") as log:
        log.write(
            "refused_action",
            action=np.array([np.nan, 0.5], dtype=np.float32),
            held_rad=np.arange(3, dtype=np.float64),
            in_a_row=np.int64(2),
            flag=np.bool_(True),
            where=pathlib.Path("/tmp/x"),
        )
    (event,) = read_events(tmp_path / "events.jsonl")
    assert math.isnan(event["action"][0]) and event["action"][1] == 0.5
    assert event["held_rad"] == [0.0, 1.0, 2.0]
    assert event["in_a_row"] == 2 and event["flag"] is True and event["where"] == "/tmp/x"


def test_what_json_cannot_write_is_refused_not_half_written(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        with pytest.raises(TypeError, match="object"):
            log.write("trip", thing=object())
        log.write("safe_stop", reason="after the refused one")
    assert [e["kind"] for e in read_events(path)] == ["safe_stop"]


def test_a_reopened_log_appends(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.write("trip", n=1)
    with EventLog(path) as log:
        log.write("trip", n=2)
    assert [e["n"] for e in read_events(path)] == [1, 2]


def test_a_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.write("trip", n=1)
        log.write("trip", n=2)
    with open(path, "a") as f:
        f.write('{"time_utc": "2025-01-01T00:00:00+00:00", "kind": "tr')  # a crash mid-line
    assert [e["n"] for e in read_events(path)] == [1, 2]
    # Opened again after the crash, the log drops the fragment and goes on.
    with EventLog(path) as log:
        log.write("trip", n=3)
    assert [e["n"] for e in read_events(path)] == [1, 2, 3]
    assert len(path.read_text().splitlines()) == 3


def test_a_damaged_line_before_the_last_is_an_error_naming_it(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "trip"}\nnot json\n{"kind": "safe_stop"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_events(path)


def test_no_file_means_no_events(tmp_path):
    assert read_events(tmp_path / "missing.jsonl") == []
