"""Valve-turning tasks: goal settings (fixed, three_goal, random), reward and success."""

from slac_robot.tasks.valve_turn import GOAL_SETTINGS, RewardWeights, ValveTurnTask, wrap_to_pi

__all__ = ["GOAL_SETTINGS", "RewardWeights", "ValveTurnTask", "wrap_to_pi"]
