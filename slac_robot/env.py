"""The valve-turning environment: a Robot, a Camera and a ControlClock behind the Gymnasium API.

One step, always in this order, whatever the backend:
  action filter (safety) -> command -> one control period -> read robot and camera -> health
  monitor (safety) -> observation, named reward terms, success.
A fault from the monitor, or a bus or camera error on the way, trips the safety layer: the robot
is made safe, the event logged, and SafetyTrip raised. Tasks and backends fill in their parts;
none of them can step around the safety layer.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import gymnasium as gym
import numpy as np

from slac_robot.config import ConfigError, require_number, require_positive
from slac_robot.interfaces import Camera, ControlClock, Frame, Robot, RobotState
from slac_robot.safety import ActionFilter, EventLog, Fault, HealthMonitor, ResetFailed, SafetyTrip, ScriptedReset
from slac_robot.safety.monitor import BACKEND_ERRORS, fault_from_error
from slac_robot.safety.safe_stop import STOP_MODES, make_safe
from slac_robot.tasks import ValveTurnTask
from slac_robot.tasks.valve_turn import angle_features


class ValveTurnEnv(gym.Env):
    """Gymnasium environment for turning the D'Claw's valve from images.

    Observation: dict with
      image:     uint8 (H, W, 3), the agent camera's newest frame;
      joint_pos: float32 (9,), measured joint angles in radians;
      valve:     float32 (2,), (cos, sin) of the measured valve angle (the valve servo's reading
                 on hardware): for SAC from the state, and to probe what an image agent learnt;
      goal:      float32 (2,), (cos, sin) of the goal angle.
    Action: float32 (9,) in [-1, 1], mapped by the safety layer onto the joint target limits.
    A non-finite action is refused (the claw holds); that step's info then has "held_action",
    the action that commands the hold, to record in its place.
    An episode is truncated (never terminated) after task.episode_steps steps.

    robot, camera, clock: the backend (see slac_robot.backends.make_env).
    action_filter: actions -> safe joint targets. monitor: the health checks of every tick.
    reset: the scripted reset (kept as `scripted_reset`; its `ask_person` may be set later).
    stop_mode, stop_hold_s: how a trip makes the robot safe (slac_robot.safety.safe_stop).
    event_log: where trips, refused actions, failed resets and safe stops are written; None:
        nowhere (the exceptions still say it). Assignable: the session runtime sets it.
    view_camera: optional third-person camera for `render()` (render_mode="rgb_array").
    frame_max_age_s: the oldest camera frame a step accepts.

    A trip (SafetyTrip) or a failed reset (ResetFailed) leaves the robot safe and the episode
    over: the next call must be `reset()`.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        robot: Robot,
        camera: Camera,
        clock: ControlClock,
        task: ValveTurnTask,
        action_filter: ActionFilter,
        monitor: HealthMonitor,
        reset: ScriptedReset,
        stop_mode: str,
        stop_hold_s: float,
        image_shape: tuple[int, int, int],
        frame_max_age_s: float,
        view_camera: Camera | None = None,
        render_mode: str | None = None,
        event_log: EventLog | None = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not one of {self.metadata['render_modes']}")
        if render_mode == "rgb_array" and view_camera is None:
            raise ValueError("render_mode='rgb_array' needs a view_camera")
        self.robot = robot
        self.camera = camera
        self.clock = clock
        self.task = task
        self.action_filter = action_filter
        self.monitor = monitor
        self.scripted_reset = reset
        if stop_mode not in STOP_MODES:
            raise ConfigError(f"safety.stop_mode={stop_mode!r} is not one of: {', '.join(STOP_MODES)}")
        self.stop_mode = stop_mode
        if not require_number("safety.stop_hold_s", stop_hold_s) >= 0:
            raise ConfigError(f"safety.stop_hold_s must be >= 0, got {stop_hold_s!r}")
        self.stop_hold_s = float(stop_hold_s)
        self.event_log = event_log
        self.view_camera = view_camera
        self.render_mode = render_mode
        self._frame_max_age_s = require_positive("camera.frame_max_age_s", frame_max_age_s)
        self.metadata = {**self.metadata, "render_fps": 1.0 / clock.period_s}
        n = action_filter.num_joints
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, shape=image_shape, dtype=np.uint8),
                "joint_pos": gym.spaces.Box(-math.pi, math.pi, shape=(n,), dtype=np.float32),
                "valve": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
                "goal": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            }
        )
        self.goal_rad = 0.0
        self._steps = 0
        self._episodes = 0  # resets begun, the one running included
        self._state: RobotState | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Starts an episode: draws goal and valve angle, shows the goal, runs the scripted reset.

        options: {"goal_rad": float, "valve_rad": float} override the task's draws.
        Raises ResetFailed (robot made safe, event "reset_failed" logged) when the claw or the
        valve did not arrive, SafetyTrip when the monitor or the backend failed on the way."""
        super().reset(seed=seed)
        options = options or {}
        # Both draws are made whatever the options say, so a seed starts the valve at the same
        # angle with the task's goal or a given one (an evaluation's episodes, evaluation_options).
        goal_rad, valve_rad = self.task.sample_goal(self.np_random), self.task.sample_initial_valve(self.np_random)
        self.goal_rad = float(options.get("goal_rad", goal_rad))
        valve_rad = float(options.get("valve_rad", valve_rad))
        self._state = None
        self._steps = 0
        self._episodes += 1
        self.monitor.reset()
        self.action_filter.refused_in_a_row = 0  # refusals in a row count within one episode
        try:
            self.robot.show_goal(self.goal_rad)
            state = self.scripted_reset(self.task.reset_pose_rad, valve_rad)
            if self.scripted_reset.last_put_right is not None:  # the simulation freed a wedged finger
                self._log("reset_put_right", message=self.scripted_reset.last_put_right,
                          attempts=self.scripted_reset.last_attempts)
            frame, fault = self._read_frame_and_check(state)
        except ResetFailed as error:
            failures = make_safe(self.robot, self.clock, self.stop_mode, self.stop_hold_s)
            self._log("reset_failed", message=str(error), attempts=self.scripted_reset.last_attempts, stop_failures=failures)
            raise
        except BACKEND_ERRORS as error:
            fault = fault_from_error(error)
        if fault is not None:
            self.trip(fault)
        self._state = state
        return self._observation(state, frame), self._info(state, self.task.reward_terms(state, self.goal_rad))

    def evaluation_options(self, count: int) -> list[dict[str, Any]]:
        """reset()'s options for an evaluation's count episodes (episode i: reset(seed=i,
        options=...[i])): the goals spread over the goal setting's goals, every one evaluated,
        and the valve's starts spread around the circle from each goal where the task starts it
        anywhere (the task's evaluation_starts_rad; otherwise the seed's draw)."""
        goals_rad = self.task.evaluation_goals_rad(count)
        starts_rad = self.task.evaluation_starts_rad(goals_rad)
        if starts_rad is None:
            return [{"goal_rad": goal} for goal in goals_rad]
        return [{"goal_rad": goal, "valve_rad": start} for goal, start in zip(goals_rad, starts_rad)]

    def step(self, action: np.ndarray):
        if self._state is None:
            raise RuntimeError("call reset() before step() (after a trip too)")
        refused_before = self.action_filter.refused_actions
        targets = self.action_filter(action, self._state.joint_pos_rad)
        refused = self.action_filter.refused_actions > refused_before
        if refused:
            self._log(
                "refused_action",
                action=np.asarray(action, dtype=np.float64).tolist(),
                held_rad=targets,
                refused_in_a_row=self.action_filter.refused_in_a_row,
            )
        try:
            self.robot.command(targets)
            self.clock.tick()
            state = self.robot.read()
            frame, fault = self._read_frame_and_check(state)
        except BACKEND_ERRORS as error:
            fault = fault_from_error(error)
        self._steps += 1
        if fault is not None:
            self.trip(fault)
        self._state = state
        terms = self.task.reward_terms(state, self.goal_rad)
        reward = float(sum(terms.values()))
        truncated = self._steps >= self.task.episode_steps
        info = self._info(state, terms)
        info["joint_targets_rad"] = targets
        if refused:
            # What was done instead, as an action: the one that commands the hold. Learners and
            # policy histories record this, never the NaN (one NaN there poisons every update).
            info["held_action"] = self.action_filter.to_action(targets).astype(np.float32)
        return self._observation(state, frame), reward, False, truncated, info

    def trip(self, fault: Fault) -> NoReturn:
        """Makes the robot safe, logs event "trip" (the fault, step and episode), raises SafetyTrip."""
        failures = make_safe(self.robot, self.clock, self.stop_mode, self.stop_hold_s)
        self._state = None
        self._log("trip", fault=fault.to_dict(), stop_mode=self.stop_mode, stop_failures=failures)
        raise SafetyTrip(fault, failures)

    def make_safe(self, reason: str) -> list[str]:
        """Makes the robot safe now (a stop signal, an exception in the session) and logs event
        "safe_stop" with the reason; returns what failed. The next call must be `reset()`."""
        failures = make_safe(self.robot, self.clock, self.stop_mode, self.stop_hold_s)
        self._state = None
        self._log("safe_stop", reason=reason, stop_mode=self.stop_mode, stop_failures=failures)
        return failures

    def render(self) -> np.ndarray | None:
        """The third-person view (render_mode="rgb_array"), else None."""
        if self.render_mode != "rgb_array":
            return None
        return self.view_camera.read(self._frame_max_age_s).image

    def close(self) -> None:
        """Closes cameras and robot (the robot leaves its torque off), then the event log."""
        for part in (self.view_camera, self.camera, self.robot, self.event_log):
            if part is not None:
                part.close()

    def _read_frame_and_check(self, state: RobotState) -> tuple[Frame, Fault | None]:
        """This tick's camera frame, and the monitor's verdict on the tick."""
        frame = self.camera.read(self._frame_max_age_s)
        fault = self.monitor.check(
            state, self.clock.now_s(), frame, self.clock.overruns, self.action_filter.refused_in_a_row
        )
        return frame, fault

    def _log(self, kind: str, **fields: Any) -> None:
        if self.event_log is not None:
            self.event_log.write(kind, episode=self._episodes, step=self._steps, goal_rad=self.goal_rad, **fields)

    def _observation(self, state: RobotState, frame: Frame) -> dict[str, np.ndarray]:
        return {
            "image": frame.image,
            "joint_pos": np.clip(state.joint_pos_rad, -math.pi, math.pi).astype(np.float32),
            "valve": angle_features(state.valve_pos_rad),
            "goal": self.task.goal_features(self.goal_rad),
        }

    def _info(self, state: RobotState, reward_terms: dict[str, float]) -> dict[str, Any]:
        error = self.task.error_rad(state, self.goal_rad)
        return {
            "goal_rad": self.goal_rad,
            "valve_rad": state.valve_pos_rad,
            "error_rad": error,
            "success": self.task.is_success(state, self.goal_rad),
            "reward_terms": reward_terms,
            "refused_actions": self.action_filter.refused_actions,
            "step": self._steps,
        }
