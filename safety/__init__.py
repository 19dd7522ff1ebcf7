"""Safety layer (installed as `slac_robot.safety`): every step and every reset passes through here.

- `action_filter`: actions to joint targets within the joint limits and a motion limit from the
  measured position; non-finite actions refused (the claw holds).
- `monitor`: the health checks of every tick (error bits, temperature, current, position,
  velocity, stale readings and frames, overruns, refused actions) -> `faults.Fault`.
- `safe_stop`: hold then torque off, or torque off.
- `reset`: the scripted reset (ordered, velocity-limited, checked, retried, then a person).
- `events`: the JSONL safety event log, fsynced line by line.
`slac_robot.env.ValveTurnEnv` ties them together; `slac_robot.backends` builds them from config.
"""

from slac_robot.safety.action_filter import ActionFilter
from slac_robot.safety.events import EventLog, read_events
from slac_robot.safety.faults import NEEDS_PERSON, Fault, SafetyTrip
from slac_robot.safety.monitor import HealthLimits, HealthMonitor, fault_from_error
from slac_robot.safety.reset import ResetFailed, ScriptedReset
from slac_robot.safety.safe_stop import STOP_MODES, make_safe

__all__ = [
    "ActionFilter",
    "EventLog",
    "Fault",
    "HealthLimits",
    "HealthMonitor",
    "NEEDS_PERSON",
    "ResetFailed",
    "STOP_MODES",
    "SafetyTrip",
    "ScriptedReset",
    "fault_from_error",
    "make_safe",
    "read_events",
]
