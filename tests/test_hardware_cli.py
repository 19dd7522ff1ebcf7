"""The hardware commands end to end: emulate-bus (as its own process, for the SDK as a client),
check-hardware, and rollout through backend=emulated."""

from __future__ import annotations

import csv
import subprocess
import sys

import dynamixel_sdk as sdk

from slac_robot.cli import main
from slac_robot.hardware.control_table import MODEL_BY_NAME

JOINTS = ("10", "11", "12", "20", "21", "22", "30", "31", "32")


def test_emulate_bus_serves_any_client_until_it_stops():
    process = subprocess.Popen(
        [sys.executable, "-m", "slac_robot.cli", "emulate-bus", "duration_s=20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert "Dynamixel bus emulator on /dev/" in line, line + process.stderr.read()
        path = line.split(" on ", 1)[1].split()[0]
        port, packets = sdk.PortHandler(path), sdk.PacketHandler(2.0)
        assert port.openPort() and port.setBaudRate(1_000_000)
        found, result = packets.broadcastPing(port)
        port.closePort()
        assert result == sdk.COMM_SUCCESS
        assert sorted(found) == [10, 11, 12, 20, 21, 22, 30, 31, 32, 50, 60]
        assert {v[0] for v in found.values()} == {MODEL_BY_NAME["XM430-W350"].number}
    finally:
        process.terminate()  # SIGTERM: stops at the next period, like Ctrl-C
        out, err = process.communicate(timeout=30)
    assert process.returncode == 143, err
    assert "instruction packets" in out


def test_check_hardware_prints_every_motor(capsys):
    rc = main(["check-hardware", "backend=emulated"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [r[0] for r in rows] == [*JOINTS, "50", "60"]
    assert all(r[1] == "XM430-W350" and r[-1] == "ok" for r in rows)
    assert "all 11 motors answer" in out


def test_check_hardware_names_a_missing_port_and_fails(capsys):
    rc = main(["check-hardware", "backend.port=/dev/ttyUSB-not-here"])
    assert rc == 1
    assert "/dev/ttyUSB-not-here does not exist; plug in the U2D2" in capsys.readouterr().err


def test_check_hardware_reports_a_silent_motor(capsys):
    rc = main(["check-hardware", "backend=emulated", "backend.emulator.absent_ids=[21]", "backend.retries=0"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "1 motor(s) with a problem: 21: does not answer" in captured.err


def test_rollout_runs_through_the_emulated_bus(tmp_path, capsys):
    rc = main([
        "rollout", "backend=emulated", "episodes=1", "task.episode_steps=4", "video.agent=false",
        "video.view=false", f"out_dir={tmp_path}",
    ])
    assert rc == 0, capsys.readouterr().err
    with open(tmp_path / "episodes.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert int(row["steps"]) == 4


def test_backend_dclaw_without_its_camera_or_bus_says_which_and_exits_1(tmp_path, capsys):
    # No RealSense here: the default camera_device names the problem before any bus is opened.
    assert main(["rollout", "backend=dclaw", "video.view=false", f"out_dir={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "RealSense" in err and "Traceback" not in err
    # An OpenCV camera on a folder of images works here; then the missing port is the problem.
    import imageio.v2 as imageio
    import numpy as np

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        imageio.imwrite(frames / f"{i:03d}.png", np.full((48, 64, 3), 40 * i, np.uint8))
    missing = tmp_path / "ttyUSB9"
    rc = main(["rollout", "backend=dclaw", "video.view=false", "camera_device=opencv", f"camera_device.source={frames}",
               "camera_device.loop=true",
               f"backend.port={missing}", f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert str(missing) in err and "Traceback" not in err
