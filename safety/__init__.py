"""Safety layer (installed as `slac_robot.safety`): every action passes through here.

Now: the action filter (normalised actions to joint targets inside the joint limits; non-finite
actions refused). The health monitor, per-step motion limit, resets and safe stop follow in the
safety issue, in this same path.
"""

from slac_robot.safety.action_filter import ActionFilter

__all__ = ["ActionFilter"]
