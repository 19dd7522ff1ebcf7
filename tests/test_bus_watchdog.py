"""The servos' Bus Watchdog in the bus emulator: the e-manual's rules through dynamixel-sdk, and
the hard kill it is there for: a driver process SIGKILLed mid-motion leaves a claw that stops and
holds, and a driver that connects again clears it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import dynamixel_sdk as sdk
import numpy as np
import pytest
from omegaconf import OmegaConf

from slac_robot.backends import make_bus, make_dclaw, make_simulation, start_bus_emulator
from slac_robot.hardware.control_table import MODEL_BY_NAME, REG
from slac_robot.hardware.emulator import BusEmulator, EmulatedMotor
from slac_robot.runtime.clock import RateKeeper
from slac_robot.sim import SimRobot
from conftest import compose
from waiting import wait_until

XM = MODEL_BY_NAME["XM430-W350"]
RANGE = 4
WATCHDOG, TORQUE, GOAL = REG["bus_watchdog"].address, REG["torque_enable"].address, REG["goal_position"].address


@pytest.fixture
def emulator():
    with BusEmulator({i: EmulatedMotor(i, XM) for i in (1, 2)}) as emu:
        yield emu


def arm(port, ph, motor_id: int, counts: int, goal: int = 2048) -> float:
    """Torque on, a goal, the watchdog armed; returns a time before the arming write went out."""
    assert ph.write1ByteTxRx(port, motor_id, TORQUE, 1) == (sdk.COMM_SUCCESS, 0)
    assert ph.write4ByteTxRx(port, motor_id, GOAL, goal) == (sdk.COMM_SUCCESS, 0)
    sent_s = time.monotonic()
    assert ph.write1ByteTxRx(port, motor_id, WATCHDOG, counts) == (sdk.COMM_SUCCESS, 0)
    return sent_s


# -- the e-manual's rules -------------------------------------------------------------------------
def test_a_quiet_bus_fires_the_watchdog_then_goals_are_refused_until_it_is_cleared(port, ph, emulator):
    armed_s = arm(port, ph, 1, counts=5, goal=1500)  # 5 x 20 ms
    assert not emulator.watchdog_fired(1)
    wait_until(lambda: emulator.watchdog_fired(1), "motor 1's watchdog to fire")
    assert time.monotonic() - armed_s >= 0.1  # not before 100 ms of quiet
    assert ph.read1ByteTxRx(port, 1, WATCHDOG) == (0xFF, sdk.COMM_SUCCESS, 0)  # -1
    assert ph.read1ByteTxRx(port, 1, TORQUE) == (1, sdk.COMM_SUCCESS, 0)  # it holds, torque on
    assert ph.write4ByteTxRx(port, 1, GOAL, 2500) == (sdk.COMM_SUCCESS, RANGE)
    assert ph.read4ByteTxRx(port, 1, GOAL) == (1500, sdk.COMM_SUCCESS, 0)  # stopped where it was
    # Other registers stay writable; only writing 0 to the watchdog frees the goals.
    assert ph.write1ByteTxRx(port, 1, REG["led"].address, 1) == (sdk.COMM_SUCCESS, 0)
    assert ph.write1ByteTxRx(port, 1, WATCHDOG, 0) == (sdk.COMM_SUCCESS, 0)
    assert not emulator.watchdog_fired(1)
    assert ph.write4ByteTxRx(port, 1, GOAL, 2500) == (sdk.COMM_SUCCESS, 0)
    assert ph.read4ByteTxRx(port, 1, REG["present_position"].address)[0] == 2500


def test_a_sync_write_to_a_fired_servo_changes_nothing(port, ph, emulator):
    arm(port, ph, 1, counts=2, goal=1000)
    wait_until(lambda: emulator.watchdog_fired(1), "motor 1's watchdog to fire")
    writer = sdk.GroupSyncWrite(port, ph, GOAL, 4)
    writer.addParam(1, list((3000).to_bytes(4, "little")))
    writer.addParam(2, list((3000).to_bytes(4, "little")))  # motor 2's watchdog is off
    assert writer.txPacket() == sdk.COMM_SUCCESS
    assert ph.read4ByteTxRx(port, 1, GOAL)[0] == 1000
    assert ph.read4ByteTxRx(port, 2, GOAL)[0] == 3000


def test_watchdog_off_or_torque_off_never_fires(port, ph, emulator):
    assert ph.write1ByteTxRx(port, 1, TORQUE, 1) == (sdk.COMM_SUCCESS, 0)  # watchdog 0: off
    assert ph.write1ByteTxRx(port, 2, WATCHDOG, 2) == (sdk.COMM_SUCCESS, 0)  # torque off: not watching
    time.sleep(0.3)  # several times motor 2's 40 ms
    assert not emulator.watchdog_fired(1) and not emulator.watchdog_fired(2)
    assert ph.read1ByteTxRx(port, 2, WATCHDOG) == (2, sdk.COMM_SUCCESS, 0)


def test_any_instruction_packet_on_the_bus_feeds_every_watchdog(port, ph, emulator):
    """The e-manual counts every instruction packet as communication: pinging motor 2 keeps
    motor 1's watchdog from firing."""
    arm(port, ph, 1, counts=5)  # 100 ms
    until = time.monotonic() + 0.4
    while time.monotonic() < until:
        assert ph.ping(port, 2)[1] == sdk.COMM_SUCCESS
        time.sleep(0.02)
    assert not emulator.watchdog_fired(1)
    wait_until(lambda: emulator.watchdog_fired(1), "motor 1's watchdog to fire once the pings stop")


def test_the_watchdog_takes_0_to_127_and_a_reboot_clears_it(port, ph, emulator):
    assert ph.write1ByteTxRx(port, 1, WATCHDOG, 128) == (sdk.COMM_SUCCESS, RANGE)
    assert ph.write1ByteTxRx(port, 1, WATCHDOG, 0xFF) == (sdk.COMM_SUCCESS, RANGE)  # -1 is not for writing
    assert ph.write1ByteTxRx(port, 1, WATCHDOG, 127) == (sdk.COMM_SUCCESS, 0)
    arm(port, ph, 2, counts=1)
    wait_until(lambda: emulator.watchdog_fired(2), "motor 2's watchdog to fire")
    assert ph.reboot(port, 2) == (sdk.COMM_SUCCESS, 0)
    assert not emulator.watchdog_fired(2)
    assert ph.read1ByteTxRx(port, 2, TORQUE)[0] == 0


# -- the hard kill --------------------------------------------------------------------------------
# The driver in a process of its own: connect (torque on, the watchdog at argv[2] seconds), then
# move every joint back and forth at 50 Hz until killed.
DRIVER = textwrap.dedent(
    """
    import math, sys
    import numpy as np
    from omegaconf import OmegaConf
    from slac_robot.backends import make_bus, make_dclaw
    from slac_robot.config import load_config
    from slac_robot.runtime.clock import RateKeeper

    cfg = load_config("rollout", ["backend=emulated", f"backend.watchdog_s={sys.argv[2]}"])
    backend = OmegaConf.to_container(cfg.backend, resolve=True)
    safety = OmegaConf.to_container(cfg.safety, resolve=True)
    clock = RateKeeper(0.02)
    robot = make_dclaw(backend, safety, make_bus(backend, sys.argv[1]), clock)
    tick = 0
    while True:
        robot.read()
        robot.command(np.full(9, 0.4 * math.sin(2 * math.pi * 0.5 * tick * clock.period_s)))
        clock.tick()
        tick += 1
        if tick == 10:
            print("moving", flush=True)
    """
)


class RealTimePhysics:
    """Steps the plant's physics at the wall clock's pace, as a real claw moves on its own."""

    def __init__(self, plant):
        self._plant = plant
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        clock = RateKeeper(self._plant.simulation.period_s)
        while not self._stop.is_set():
            with self._plant.lock:
                self._plant.step_period()
            clock.tick()

    def __enter__(self) -> "RealTimePhysics":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def registers(emulator: BusEmulator, ids, name: str) -> np.ndarray:
    with emulator.plant.lock:
        return np.array([emulator.motors[i].get(name) for i in ids])


def wait_for_line(process: subprocess.Popen, expected: str, timeout_s: float) -> None:
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline().strip() if ready else ""
    if line != expected:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"the driver process did not report {expected!r} (got {line!r}):\n{err[-3000:]}")


# Longer than the default 0.5 s, so that a driver starved of CPU on a busy machine does not trip
# it before the kill.
WATCHDOG_S = 1.0


def test_a_sigkilled_driver_leaves_every_servo_stopped_by_its_watchdog():
    cfg = compose("backend=emulated", f"backend.watchdog_s={WATCHDOG_S}")
    backend = OmegaConf.to_container(cfg.backend, resolve=True)
    safety = OmegaConf.to_container(cfg.safety, resolve=True)
    joints = tuple(backend["joint_ids"])
    watched = (*joints, backend["guide_id"])  # the servos the driver torques; the valve turns freely
    simulation = make_simulation(backend)
    sim_robot = SimRobot(simulation, backend["torque_constant_nm_per_a"], backend["ambient_temperature_c"])
    emulator, plant = start_bus_emulator(backend, simulation, sim_robot)
    driver = None
    try:
        with RealTimePhysics(plant):
            driver = subprocess.Popen(
                [sys.executable, "-c", DRIVER, emulator.device_path, str(WATCHDOG_S)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            wait_for_line(driver, "moving", timeout_s=120)  # imports on a busy 2-core machine
            before = registers(emulator, joints, "goal_position")
            wait_until(lambda: np.any(registers(emulator, joints, "goal_position") != before), "the goals to move")
            assert all(emulator.motors[i].get("bus_watchdog") == WATCHDOG_S / 0.02 for i in watched)  # armed

            os.kill(driver.pid, signal.SIGKILL)
            assert driver.wait(timeout=5) == -signal.SIGKILL
            wait_until(lambda: all(emulator.watchdog_fired(i) for i in watched), "every watchdog to fire")
            assert not emulator.watchdog_fired(backend["valve_id"])
            assert all(emulator.motors[i].torque_on for i in watched)  # stopped and holding

            goals = registers(emulator, joints, "goal_position")
            time.sleep(5 * simulation.period_s)  # physics goes on
            np.testing.assert_array_equal(registers(emulator, joints, "goal_position"), goals)
            settled = registers(emulator, joints, "present_position")
            time.sleep(3 * simulation.period_s)
            moved = np.abs(registers(emulator, joints, "present_position") - settled)
            assert moved.max() <= 2, moved  # counts: the joints hold still...
            assert np.abs(settled - goals).max() <= 40, settled - goals  # ...near where they stopped

            # A driver that connects again clears the watchdogs and moves the claw.
            robot = make_dclaw(backend, safety, make_bus(backend, emulator.device_path), RateKeeper(0.02))
            try:
                assert not any(emulator.watchdog_fired(i) for i in watched)
                robot.command(np.zeros(9))
                zero = robot.calibration.counts_from_joint(joints, np.zeros(9))
                wait_until(lambda: np.array_equal(registers(emulator, joints, "goal_position"), zero), "the new goals")
            finally:
                robot.close()
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        emulator.stop()
