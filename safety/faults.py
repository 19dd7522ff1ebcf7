"""What the safety layer trips on: a `Fault` names the problem, the joints and the fix.

The kinds are plain strings (they go into the JSONL event log as they are). The environment
raises `SafetyTrip` only after it made the robot safe and logged the fault.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Health monitor kinds (slac_robot.safety.monitor): one per check.
HARDWARE_ERROR = "hardware_error"  # a servo latched Hardware Error Status bits
OVERHEATING = "overheating"  # a servo hotter than safety.health.max_temperature_c
OVERCURRENT = "overcurrent"  # a servo drawing more than safety.health.max_current_a
POSITION_LIMIT = "position_limit"  # a joint outside its limits by more than the margin
VELOCITY = "velocity"  # a joint faster than safety.health.max_joint_speed_rad_s
STALE_READING = "stale_reading"  # a joint reading too old, reused, or its health part too old
STALE_FRAME = "stale_frame"  # a camera frame too old, or the same frame again
OVERRUN = "overrun"  # the control loop missed its deadline on several ticks in a row
REFUSED_ACTIONS = "refused_actions"  # the policy sent non-finite actions several times in a row
# Errors raised by the backend during a step (slac_robot.safety.monitor.fault_from_error).
BUS_ERROR = "bus_error"  # timeouts, corrupt packets, a motor that no longer answers
PORT_LOST = "port_lost"  # the USB adapter went away
WATCHDOG = "watchdog"  # servos' Bus Watchdog fired (the loop paused with torque on); a reset re-arms it
CAMERA_LOST = "camera_lost"  # the camera cannot deliver frames any more

KINDS = frozenset(
    {
        HARDWARE_ERROR, OVERHEATING, OVERCURRENT, POSITION_LIMIT, VELOCITY, STALE_READING, STALE_FRAME,
        OVERRUN, REFUSED_ACTIONS, BUS_ERROR, PORT_LOST, WATCHDOG, CAMERA_LOST,
    }
)

# After these the session waits for a person whatever the config: a latched motor error needs a
# reboot, an overheated motor time to cool, a lost port or camera a cable put back. (Not watchdog:
# the next reset re-arms the servos' Bus Watchdog.)
NEEDS_PERSON = frozenset({HARDWARE_ERROR, OVERHEATING, PORT_LOST, CAMERA_LOST})


@dataclass(frozen=True)
class Fault:
    """Why the safety layer stopped the robot.

    kind: one of KINDS. message: the problem and what to do about it, in one line.
    joints: the joints concerned (indices into RobotState's arrays), if any.
    value, limit: the measured figure and the threshold it crossed, if there are such figures.
    """

    kind: str
    message: str
    joints: tuple[int, ...] = ()
    value: float | None = None
    limit: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of: {', '.join(sorted(KINDS))}")

    @property
    def needs_person(self) -> bool:
        """Whether the session must wait for a person before it goes on (see NEEDS_PERSON)."""
        return self.kind in NEEDS_PERSON

    def to_dict(self) -> dict[str, Any]:
        """The fault as plain JSON values (joints as a list)."""
        fields = asdict(self)
        fields["joints"] = list(self.joints)
        return fields


class SafetyTrip(RuntimeError):
    """The environment stopped: the robot was made safe and the fault logged before this was raised.

    fault: what tripped. stop_failures: what could not be done while making the robot safe
    (empty when everything worked)."""

    def __init__(self, fault: Fault, stop_failures: list[str] | tuple[str, ...] = ()):
        super().__init__(f"safety trip ({fault.kind}): {fault.message}")
        self.fault = fault
        self.stop_failures = tuple(stop_failures)
