"""One control tick on the emulated Dynamixel bus at 1 Mbps: bytes, wire time, transactions and
the driver's CPU time, for the D'Claw driver (9 joints + the valve servo in the sync read).

The emulator sleeps the wire time it accounts (bytes x 10 bits / baud + return delay), so the
driver waits as long as on a real bus. Driver CPU time is the calling thread's CPU time
(time.thread_time) around read() + command(); the emulator runs in its own thread.

    .venv/bin/python bench/bus_cycle.py [ticks]
Goal (issue 3): one read and one write transaction per tick, <= 4 ms of wire time, <= 1 ms of
driver CPU.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
from omegaconf import OmegaConf

from slac_robot.backends import make_emulated_dclaw, make_simulation
from slac_robot.config import load_config
from slac_robot.sim import SimRobot


def main(ticks: int = 500) -> None:
    cfg = load_config("rollout", ["backend=emulated", "backend.emulator.sleep_wire_time=true"])
    backend = OmegaConf.to_container(cfg.backend, resolve=True)
    safety = OmegaConf.to_container(cfg.safety, resolve=True)
    simulation = make_simulation(backend)
    sim_robot = SimRobot(simulation, backend["torque_constant_nm_per_a"], backend["ambient_temperature_c"])
    robot, clock = make_emulated_dclaw(backend, safety, simulation, sim_robot)
    emulator, bus = clock.emulator, robot.bus
    targets = np.array([0.0, -1.0, 1.0] * 3)
    cpu_s, wall_s, per_tick = [], [], []  # per_tick: (transactions, bytes, wire time, read+write wall time)
    try:
        robot.read()  # a health read first, so that the loop starts with the timer fresh
        start_stats, start_tx = emulator.stats.copy(), bus.transactions
        for tick in range(ticks):
            before, tx = emulator.stats.copy(), bus.transactions
            t_wall, t_cpu = time.perf_counter(), time.thread_time()
            robot.read()
            robot.command(targets + 0.05 * np.sin(0.1 * tick))
            cpu_s.append(time.thread_time() - t_cpu)
            wall_s.append(time.perf_counter() - t_wall)
            clock.tick()  # waits for the emulator to take the sync write
            now = emulator.stats
            per_tick.append((bus.transactions - tx, now.bytes_in + now.bytes_out - before.bytes_in - before.bytes_out,
                             now.wire_time_s - before.wire_time_s, wall_s[-1]))
        stats = emulator.stats
    finally:
        robot.close()
    n_in, n_out = stats.bytes_in - start_stats.bytes_in, stats.bytes_out - start_stats.bytes_out
    wire_s = stats.wire_time_s - start_stats.wire_time_s
    simulated_s = ticks * clock.period_s
    health_ticks = simulated_s / backend["health_period_s"]
    print(f"emulated bus, {backend['baud_rate']} bit/s, {len(backend['joint_ids'])} joints + valve, {ticks} ticks "
          f"(health read every {backend['health_period_s']} s = every {ticks / health_ticks:.0f} ticks)")
    print(f"transactions per tick:   {(bus.transactions - start_tx) / ticks:.2f}   (1 sync read + 1 sync write; "
          f"+3 sync reads on health ticks)")
    print(f"bytes per tick:          {(n_in + n_out) / ticks:.1f}   ({n_in / ticks:.1f} out, {n_out / ticks:.1f} back)")
    print(f"wire time per tick:      {1000 * wire_s / ticks:.2f} ms (mean, accounted at the baud rate)")
    print(f"driver CPU per tick:     median {1000 * statistics.median(cpu_s):.3f} ms, "
          f"p95 {1000 * np.percentile(cpu_s, 95):.3f} ms")
    print(f"read+write wall time:    median {1000 * statistics.median(wall_s):.2f} ms, p95 {1000 * np.percentile(wall_s, 95):.2f} ms")
    for name, ticks_of_kind in (("plain", [t for t in per_tick if t[0] == 2]), ("health", [t for t in per_tick if t[0] > 2])):
        if ticks_of_kind:
            transactions, n_bytes, wire, wall = (statistics.mean(column) for column in zip(*ticks_of_kind))
            print(f"{name} ticks ({len(ticks_of_kind)}): {transactions:.0f} transactions, {n_bytes:.0f} bytes, "
                  f"{1000 * wire:.2f} ms of wire time, read+write wall median "
                  f"{1000 * statistics.median(t[3] for t in ticks_of_kind):.2f} ms")
    print(f"retries: {bus.retried}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
