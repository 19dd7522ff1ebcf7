"""The one place where config becomes objects: backend parts, task, safety filter, policy.

Hydra configs stop here: everything built below gets plain keyword arguments. Each backend is a
function returning its Robot, agent Camera, ControlClock and (optional) view Camera; nothing
else in the package asks which backend it runs on.

Backends: `sim` (MuJoCo), `emulated` (the real D'Claw driver on dynamixel-sdk, talking to the
bus emulator whose servos move the MuJoCo claw), `dclaw` (the driver on a real bus).
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np
from omegaconf import DictConfig, OmegaConf

from slac_robot.env import ValveTurnEnv
from slac_robot.agent.history import vector_dims
from slac_robot.config import ConfigError, load_config, require_int, require_number, require_positive
from slac_robot.interfaces import Camera, ControlClock, Robot, RobotState
from slac_robot.policies import Policy, RandomPolicy, ScriptedTurnPolicy
from slac_robot.runtime.clock import RateKeeper
from slac_robot.safety import ActionFilter, HealthLimits, HealthMonitor, ScriptedReset
from slac_robot.tasks import RewardWeights, ValveTurnTask

if TYPE_CHECKING:
    from slac_robot.tasks.point_reach import PointReachEnv
    import gymnasium as gym
    import torch

    from slac_robot.agent.base import Agent
    from slac_robot.agent.sac_baseline import SacConfig
    from slac_robot.agent.slac import SlacConfig
    from slac_robot.agent.replay import SequenceReplay
    from slac_robot.calibration.boards import Board
    from slac_robot.calibration.joints import JointCalibration
    from slac_robot.hardware.bus import DynamixelBus
    from slac_robot.hardware.cameras.image import CropRegion
    from slac_robot.hardware.dclaw import DClawRobot
    from slac_robot.hardware.emulator import BusEmulator
    from slac_robot.hardware.emulator.sim_plant import LockstepClock, SimPlant
    from slac_robot.sim import SimRobot, ValveSimulation


class BackendParts(NamedTuple):
    robot: Robot
    camera: Camera
    clock: ControlClock
    view_camera: Camera | None
    # The scripted reset's put_right: places the claw at a pose after a reset failed (the
    # simulation only; on hardware and the bus emulator a person must, so None).
    put_right: Callable[[np.ndarray, float], RobotState] | None = None


def _plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def valve_marker(backend: dict[str, Any]) -> str:
    """The valve's marker a `backend=sim` section draws: its `valve_marker`, or for a run's
    config.yaml from before that key, the stripe its camera saw."""
    return backend.get("valve_marker", "stripe")


def make_simulation(backend: dict[str, Any]) -> "ValveSimulation":
    """Builds the MuJoCo scene and state from the `backend=sim` config section (no renderer)."""
    # Imported here: importing the sim backend picks an OpenGL platform and loads MuJoCo.
    from slac_robot.sim import ValveSimulation
    from slac_robot.sim.scene import CameraPose, SceneLayout

    def pose(c: dict[str, Any]) -> CameraPose:
        if c.get("from_extrinsics"):
            from slac_robot.calibration.extrinsics import load_sim_camera_pose

            measured = load_sim_camera_pose(c["from_extrinsics"])
            return CameraPose(measured.pos_m, measured.lookat_m, measured.fovy_deg, measured.up)
        return CameraPose(tuple(c["pos_m"]), tuple(c["lookat_m"]), c["fovy_deg"])

    return ValveSimulation(
        physics_timestep_s=backend["physics_timestep_s"],
        substeps=backend["substeps"],
        layout=SceneLayout(
            agent_camera=pose(backend["agent_camera"]),
            view_camera=pose(backend["view_camera"]),
            goal_marker_radius_m=backend["goal_marker_radius_m"],
            goal_marker_height_m=backend["goal_marker_height_m"],
            valve_marker=valve_marker(backend),
        ),
    )


def _sim_pieces(
    simulation: "ValveSimulation", backend: dict[str, Any], camera: dict[str, Any], with_view: bool
) -> tuple["SimRobot", Camera, Camera | None]:
    """The simulated robot, agent camera and (with_view) view camera on `simulation`."""
    from slac_robot.sim import SimCamera, SimRobot
    from slac_robot.sim.scene import AGENT_CAMERA, VIEW_CAMERA

    agent, view = backend["agent_camera"], backend["view_camera"]
    robot = SimRobot(
        simulation,
        torque_constant_nm_per_a=backend["torque_constant_nm_per_a"],
        ambient_temperature_c=backend["ambient_temperature_c"],
    )
    agent_camera = SimCamera(
        simulation, AGENT_CAMERA, camera["width_px"], camera["height_px"], visual=agent["visual"]
    )
    view_camera = None
    if with_view:
        view_camera = SimCamera(
            simulation,
            VIEW_CAMERA,
            view["width_px"],
            view["height_px"],
            visual=view["visual"],
            multisamples=view["multisamples"],
            shadows=view["shadows"],
        )
    return robot, agent_camera, view_camera


def _sim_parts(
    backend: dict[str, Any],
    camera: dict[str, Any],
    camera_device: dict[str, Any],
    safety: dict[str, Any],
    with_view: bool,
) -> BackendParts:
    from slac_robot.sim import SimClock

    simulation = make_simulation(backend)
    robot, agent_camera, view_camera = _sim_pieces(simulation, backend, camera, with_view)
    put_right = robot.place if backend["put_right_failed_resets"] else None
    return BackendParts(robot, agent_camera, SimClock(simulation), view_camera, put_right)


def make_joint_calibration(calibration_file: str | None) -> "JointCalibration":
    """Loads the joint calibration file (None: ROBEL's nominal one shipped with the package)."""
    from slac_robot.calibration.joints import NOMINAL_FILE, CalibrationError, JointCalibration

    try:
        return JointCalibration.load(calibration_file or NOMINAL_FILE)
    except CalibrationError as error:
        raise ConfigError(f"backend.calibration_file: {error}") from None


def make_bus(backend: dict[str, Any], port: str) -> "DynamixelBus":
    """Opens the Dynamixel bus on `port` with the `backend` section's settings."""
    from slac_robot.hardware.bus import DynamixelBus

    return DynamixelBus(
        port,
        baud_rate=require_int("backend.baud_rate", backend["baud_rate"]),
        retries=require_int("backend.retries", backend["retries"], minimum=0),
        latency_timer_s=backend["latency_timer_s"],
        timeout_margin_s=backend["timeout_margin_s"],
        drain_s=backend["drain_s"],
    )


def start_bus_emulator(
    backend: dict[str, Any], simulation: "ValveSimulation", robot: "SimRobot"
) -> tuple["BusEmulator", "SimPlant"]:
    """Starts the bus emulator with the configured servos in front of the simulated claw."""
    from slac_robot.hardware.control_table import MODEL_BY_NAME
    from slac_robot.hardware.emulator import BusEmulator, EmulatedMotor
    from slac_robot.hardware.emulator.motor import FIRMWARE_VERSION
    from slac_robot.hardware.emulator.sim_plant import SimPlant

    emulator_cfg = backend["emulator"]
    model_name = emulator_cfg["joint_model"]
    if model_name not in MODEL_BY_NAME:
        raise ConfigError(
            f"backend.emulator.joint_model={model_name!r} is not one of: {', '.join(MODEL_BY_NAME)}"
        )
    joint_ids = tuple(backend["joint_ids"])
    others = [i for i in (backend["valve_id"], backend["guide_id"]) if i is not None]
    absent = set(emulator_cfg["absent_ids"])
    firmware = emulator_cfg["firmware_version"]
    firmware = FIRMWARE_VERSION if firmware is None else require_int("backend.emulator.firmware_version", firmware)
    motors = {i: EmulatedMotor(i, MODEL_BY_NAME[model_name], firmware) for i in (*joint_ids, *others) if i not in absent}
    mounting = make_joint_calibration(emulator_cfg["mounting_file"])
    plant = SimPlant(robot, simulation, mounting, joint_ids, backend["valve_id"], backend["guide_id"])
    emulator = BusEmulator(
        motors, plant, baud_rate=backend["baud_rate"], sleep_wire_time=bool(emulator_cfg["sleep_wire_time"])
    )
    return emulator.start(), plant


def make_dclaw(
    backend: dict[str, Any],
    safety: dict[str, Any],
    bus: "DynamixelBus",
    clock: ControlClock,
    release: Callable[[], None] | None = None,
) -> "DClawRobot":
    """The D'Claw driver on an open bus; closes the bus when the driver cannot start."""
    from slac_robot.hardware.dclaw import DClawRobot

    from slac_robot.calibration.joints import CalibrationError

    try:
        calibration = make_joint_calibration(backend["calibration_file"])
        return DClawRobot(
            bus,
            calibration,
            clock,
            joint_ids=tuple(backend["joint_ids"]),
            valve_id=backend["valve_id"],
            guide_id=backend["guide_id"],
            joint_lower_rad=safety["joint_lower_rad"],
            joint_upper_rad=safety["joint_upper_rad"],
            health_period_s=backend["health_period_s"],
            watchdog_s=backend["watchdog_s"],
            release=release,
        )
    except Exception as error:
        bus.close()
        if release is not None:
            release()
        if isinstance(error, CalibrationError):
            raise ConfigError(f"backend.calibration_file: {error}") from None
        raise


def _emulator_and_bus(
    backend: dict[str, Any], simulation: "ValveSimulation", sim_robot: "SimRobot"
) -> tuple["BusEmulator", "SimPlant", "DynamixelBus"]:
    """A started bus emulator in front of `simulation` and a bus opened on its device."""
    emulator, plant = start_bus_emulator(backend, simulation, sim_robot)
    try:
        return emulator, plant, make_bus(backend, emulator.device_path)
    except Exception:
        emulator.stop()
        raise


def make_emulated_dclaw(
    backend: dict[str, Any], safety: dict[str, Any], simulation: "ValveSimulation", sim_robot: "SimRobot"
) -> tuple["DClawRobot", "LockstepClock"]:
    """The D'Claw driver on a bus emulator in front of `simulation`, and the lockstep clock that
    steps it (`clock.emulator`, `clock.plant` reach the emulator, e.g. to inject faults).
    Closing the robot stops the emulator."""
    from slac_robot.hardware.emulator.sim_plant import LockstepClock

    emulator, plant, bus = _emulator_and_bus(backend, simulation, sim_robot)
    clock = LockstepClock(plant, emulator, lambda: bus.bytes_sent)
    return make_dclaw(backend, safety, bus, clock, release=emulator.stop), clock


def _emulated_parts(
    backend: dict[str, Any],
    camera: dict[str, Any],
    camera_device: dict[str, Any],
    safety: dict[str, Any],
    with_view: bool,
) -> BackendParts:
    simulation = make_simulation(backend)
    sim_robot, agent_camera, view_camera = _sim_pieces(simulation, backend, camera, with_view)
    try:
        robot, clock = make_emulated_dclaw(backend, safety, simulation, sim_robot)
    except Exception:
        for c in (agent_camera, view_camera):
            if c is not None:
                c.close()
        raise
    return BackendParts(robot, agent_camera, clock, view_camera)


def _dclaw_parts(
    backend: dict[str, Any],
    camera: dict[str, Any],
    camera_device: dict[str, Any],
    safety: dict[str, Any],
    with_view: bool,
) -> BackendParts:
    if with_view:
        raise ConfigError("backend=dclaw has no third-person view camera; set video.view=false")
    agent_camera = make_hardware_camera(camera_device, camera)
    clock = RateKeeper(backend["control_period_s"])
    try:
        robot = make_dclaw(backend, safety, make_bus(backend, backend["port"]), clock)
    except Exception:
        agent_camera.close()
        raise
    return BackendParts(robot, agent_camera, clock, None)


def open_bus(
    backend: dict[str, Any], hold_pose_rad: list[float] | None = None
) -> tuple["DynamixelBus", Callable[[], None]]:
    """A bus for the tools that talk to the servos without the environment (check-hardware,
    calibrate-joints); returns the bus and a function that closes everything opened.

    backend=dclaw opens backend.port. backend=emulated starts the emulator on a simulated claw
    that stands still; hold_pose_rad places its joints there first (as a person holding the claw)."""
    name = backend["name"]
    if name == "dclaw":
        bus = make_bus(backend, backend["port"])
        return bus, bus.close
    if name != "emulated":
        raise ConfigError(f"backend={name} has no Dynamixel bus; use backend=dclaw or backend=emulated")
    from slac_robot.sim import SimRobot

    simulation = make_simulation(backend)
    sim_robot = SimRobot(simulation, backend["torque_constant_nm_per_a"], backend["ambient_temperature_c"])
    if hold_pose_rad is not None:
        sim_robot.place(np.asarray(hold_pose_rad, dtype=float), 0.0)
    emulator, _, bus = _emulator_and_bus(backend, simulation, sim_robot)

    def close() -> None:
        bus.close()
        emulator.stop()

    return bus, close


# Each backend: (backend, camera, camera_device, safety, with_view) sections -> BackendParts.
# camera is the agent image (size, oldest frame); camera_device the hardware camera, which only
# backend=dclaw uses (sim and emulated render the agent camera from the simulation).
BACKENDS: dict[str, Callable[[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], bool], BackendParts]] = {
    "sim": _sim_parts,
    "emulated": _emulated_parts,
    "dclaw": _dclaw_parts,
}


def make_hardware_camera(device: dict[str, Any], image: dict[str, Any] | None) -> Camera:
    """Builds the camera of a `camera_device` config section (realsense or opencv).

    device: the camera_device section (plain dict).
    image: the top-level `camera` section (width_px, height_px: the agent's image); None hands
        out the full sensor image as it comes, without region or undistortion (for calibration).
    Raises ConfigError for bad values, CameraError when the camera cannot be opened."""
    from slac_robot.calibration.intrinsics import load_intrinsics
    from slac_robot.hardware.cameras.image import ImageSettings

    kwargs = dict(device)
    name = kwargs.pop("name")
    crop, calibration_file = kwargs.pop("crop"), kwargs.pop("calibration_file")
    settings = ImageSettings()
    if image is not None:
        settings = ImageSettings(
            width_px=require_int("camera.width_px", image["width_px"]),
            height_px=require_int("camera.height_px", image["height_px"]),
            crop=make_crop_region(crop),
            intrinsics=load_intrinsics(calibration_file) if calibration_file else None,
        )
    prefix = "camera_device."
    for key in ("warmup_frames", "max_reconnects"):
        require_int(prefix + key, kwargs[key], minimum=0)
    for key in ("fps", "frame_timeout_s", "reconnect_timeout_s", "reconnect_wait_s"):
        if key in kwargs:
            require_positive(prefix + key, kwargs[key])
    if name == "realsense":
        from slac_robot.hardware.cameras.realsense import RealSenseCamera

        serial = kwargs.pop("serial")
        # hydra reads an unquoted serial as a number; serials are text
        return RealSenseCamera(settings, serial=None if serial is None else str(serial), **kwargs)
    if name == "opencv":
        from slac_robot.hardware.cameras.opencv_camera import OpenCVCamera

        source = kwargs.pop("source")
        if isinstance(source, str) and source.isdigit():
            source = int(source)  # a device index
        return OpenCVCamera(settings, source=source, **kwargs)
    raise ConfigError(f"camera_device.name={name!r} is not one of: realsense, opencv")


def make_crop_region(crop: dict[str, Any] | None) -> "CropRegion | None":
    """The `camera_device.crop` region (None stays None: the camera's centred default)."""
    from slac_robot.hardware.cameras.image import CropRegion

    if crop is None:
        return None
    keys = ("x_px", "y_px", "width_px", "height_px")
    if not isinstance(crop, dict) or set(crop) != set(keys):
        raise ConfigError(f"camera_device.crop must be null or {{{', '.join(keys)}}}, got {crop!r}")
    return CropRegion(
        *(require_int(f"camera_device.crop.{key}", crop[key], minimum=int(key in ("width_px", "height_px"))) for key in keys)
    )


def make_board(board: DictConfig) -> "Board":
    """Builds a calibration board from the `board` config group (charuco or checkerboard)."""
    from slac_robot.calibration.boards import Board, BoardSpec

    try:
        spec = BoardSpec(**_plain(board))
    except TypeError as error:
        raise ConfigError(f"board: {error}; the valid keys are those of BoardSpec") from None
    return Board(spec)


TASK_KINDS = ("valve_turn", "point_reach")  # task.kind: the claw's valve, or PointReach (no robot)
# The task group's keys that are not the task's own arguments: the group's choice, the env's kind,
# and the true state that agent=sac_state reads.
TASK_GROUP_KEYS = ("name", "kind", "state_keys")


def task_kind(task: DictConfig) -> str:
    """The `task` config group's kind (valve_turn | point_reach); a run saved before tasks had
    kinds is a valve run."""
    kind = str(task.get("kind", "valve_turn"))
    if kind not in TASK_KINDS:
        raise ConfigError(f"task.kind={kind!r} is not one of: {', '.join(TASK_KINDS)}")
    return kind


def make_task(task: DictConfig) -> ValveTurnTask:
    """Builds the valve-turning task from the `task` config group."""
    kwargs = _plain(task)
    for key in TASK_GROUP_KEYS:
        kwargs.pop(key, None)
    reward = kwargs.pop("reward")
    try:
        weights = RewardWeights(**reward)
    except TypeError as error:
        raise ConfigError(f"task.reward: {error}; the valid keys are those of RewardWeights") from None
    return ValveTurnTask(reward=weights, **kwargs)


def make_action_filter(safety: DictConfig | dict[str, Any], period_s: float) -> ActionFilter:
    """Builds the action filter from the `safety` config section for a control period of period_s:
    a target moves at most safety.max_joint_speed_rad_s x period_s from the measured position."""
    speed = require_positive("safety.max_joint_speed_rad_s", safety["max_joint_speed_rad_s"])
    return ActionFilter(safety["joint_lower_rad"], safety["joint_upper_rad"], max_step_rad=speed * period_s)


def make_health_monitor(safety: DictConfig | dict[str, Any]) -> HealthMonitor:
    """Builds the health monitor from the `safety` section (thresholds in safety.health)."""
    health = safety["health"]
    if isinstance(health, DictConfig):
        health = _plain(health)
    return HealthMonitor(HealthLimits.from_config(health), safety["joint_lower_rad"], safety["joint_upper_rad"])


def make_scripted_reset(
    safety: DictConfig | dict[str, Any],
    robot: Robot,
    clock: ControlClock,
    action_filter: ActionFilter,
    put_right: Callable[[np.ndarray, float], RobotState] | None = None,
) -> ScriptedReset:
    """Builds the scripted reset from the `safety.reset` section (nobody to ask: ask_person None;
    put_right: the backend's, see BackendParts)."""
    reset = safety["reset"]
    return ScriptedReset(
        robot,
        clock,
        action_filter,
        tolerance_rad=reset["tolerance_rad"],
        valve_tolerance_rad=reset["valve_tolerance_rad"],
        stage_timeout_s=reset["stage_timeout_s"],
        settled_speed_rad_s=reset["settled_speed_rad_s"],
        stall_s=reset["stall_s"],
        attempts=reset["attempts"],
        put_right=put_right,
    )


def make_point_reach(cfg: DictConfig) -> "PointReachEnv":
    """PointReach (task=point_reach) from the `task` group, its images camera.width_px square; a
    bad value raises ConfigError naming the key."""
    from slac_robot.tasks.point_reach import PointReachEnv

    kwargs = _plain(cfg.task)
    for key in TASK_GROUP_KEYS:
        kwargs.pop(key)
    if cfg.camera.width_px != cfg.camera.height_px:
        raise ConfigError(f"task=point_reach draws square images; camera.width_px={cfg.camera.width_px} and "
                          f"camera.height_px={cfg.camera.height_px} must be equal")
    try:
        return PointReachEnv(image_size_px=require_int("camera.width_px", cfg.camera.width_px),
                             fixed_goal=tuple(kwargs.pop("fixed_goal")), **kwargs)
    except TypeError as error:
        raise ConfigError(f"task: {error}; the valid keys are those of PointReachEnv") from None


def check_env_config(cfg: DictConfig) -> None:
    """Checks the values of the task, and for the valve of the backend choice, camera and safety
    sections, without opening anything (a command checks them before it makes its run directory)."""
    if task_kind(cfg.task) == "point_reach":
        make_point_reach(cfg)  # numpy only: building it checks every value
    else:
        _valve_env_config(cfg)


def _valve_env_config(cfg: DictConfig) -> tuple[ValveTurnTask, dict[str, Any], dict[str, Any], HealthMonitor]:
    """check_env_config for the valve; returns the task, the camera and safety sections (plain
    dicts) and the health monitor built from them."""
    name = cfg.backend.name
    if name not in BACKENDS:
        raise ConfigError(f"backend.name={name!r} is not one of: {', '.join(BACKENDS)}")
    task = make_task(cfg.task)
    camera = _plain(cfg.camera)
    for key in ("width_px", "height_px"):
        require_int(f"camera.{key}", camera[key])
    # Checked here first: safety.health.max_frame_age_s defaults to it, and the error should name its source.
    require_positive("camera.frame_max_age_s", camera["frame_max_age_s"])
    safety = _plain(cfg.safety)
    monitor = make_health_monitor(safety)
    require_positive("safety.max_joint_speed_rad_s", safety["max_joint_speed_rad_s"])
    if not require_number("safety.stop_hold_s", safety["stop_hold_s"]) >= 0:
        raise ConfigError(f"safety.stop_hold_s must be >= 0, got {safety['stop_hold_s']!r}")
    reset = safety["reset"]
    for key in ("tolerance_rad", "valve_tolerance_rad", "stage_timeout_s", "settled_speed_rad_s", "stall_s"):
        require_positive(f"safety.reset.{key}", reset[key])
    require_int("safety.reset.attempts", reset["attempts"])
    return task, camera, safety, monitor


def make_env(cfg: DictConfig, render: bool = False, realtime: bool = False) -> "ValveTurnEnv | PointReachEnv":
    """Assembles the environment for cfg.backend, cfg.task, cfg.camera and cfg.safety (for
    task=point_reach: PointReach, which has no backend, safety layer or clock).

    render: also build the third-person view camera, for `env.render()` and videos.
    realtime: pace a simulated backend's clock at its control rate on the wall clock (a
    RateKeeper around it), as a session on the real claw runs; hardware clocks always are.
    The env has no event log yet: the session runtime sets `env.event_log`."""
    if task_kind(cfg.task) == "point_reach":
        return make_point_reach(cfg)
    task, camera, safety, monitor = _valve_env_config(cfg)  # bad values fail before any device is opened
    parts = BACKENDS[cfg.backend.name](_plain(cfg.backend), camera, _plain(cfg.camera_device), safety, render)
    if realtime and not isinstance(parts.clock, RateKeeper):
        parts = parts._replace(clock=RateKeeper(parts.clock.period_s, inner=parts.clock))
    try:
        action_filter = make_action_filter(safety, parts.clock.period_s)
        return ValveTurnEnv(
            robot=parts.robot,
            camera=parts.camera,
            clock=parts.clock,
            task=task,
            action_filter=action_filter,
            monitor=monitor,
            reset=make_scripted_reset(safety, parts.robot, parts.clock, action_filter, parts.put_right),
            stop_mode=safety["stop_mode"],
            stop_hold_s=safety["stop_hold_s"],
            image_shape=(camera["height_px"], camera["width_px"], 3),
            frame_max_age_s=camera["frame_max_age_s"],
            view_camera=parts.view_camera,
            render_mode="rgb_array" if render else None,
        )
    except Exception:
        # A rejected value must not leave the robot powered or a device held.
        for part in (parts.view_camera, parts.camera, parts.robot):
            if part is not None:
                part.close()
        raise


def make_policy(policy: DictConfig, env: ValveTurnEnv) -> Policy:
    """Builds the rollout policy from the `policy` config group."""
    kwargs = _plain(policy)
    name = kwargs.pop("name")
    if name == "random":
        return RandomPolicy(env.action_space.shape[0])
    if name == "scripted":
        return ScriptedTurnPolicy(
            env.action_filter, hold_within_rad=env.task.success_threshold_rad, **kwargs
        )
    raise ConfigError(f"policy.name={name!r} is not one of: random, scripted")


def make_registered_env(
    overrides: list[str] | tuple[str, ...] = (), render_mode: str | None = None
) -> ValveTurnEnv:
    """Entry point of `gymnasium.make("slac_robot/ValveTurn-v0", overrides=[...])`.

    overrides: hydra overrides of the rollout config, e.g. ["task=three_goal"].
    render_mode: None, or "rgb_array" for the third-person view."""
    return make_env(load_config("rollout", overrides), render=render_mode == "rgb_array")


def resolve_device(name: str) -> "torch.device":
    """`device` config value -> torch.device: auto picks CUDA when present, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but torch sees no CUDA device here; use device=cpu or device=auto")
    return device


AGENTS = ("slac", "sac")  # agent.kind: SLAC, or SAC without a latent model (agent.observation says from what)




def agent_config(agent: DictConfig, image_shape: tuple[int, ...]) -> tuple[str, Any]:
    """The agent config group's kind (slac | sac) and its SlacConfig or SacConfig, every value
    checked for images of image_shape (H, W, 3); a bad value raises ConfigError naming the key.
    Builds no network: a command checks this before it opens the robot or makes a run directory."""
    kwargs = _plain(agent)
    kwargs.pop("name")
    kwargs.pop("schedule")  # read by train.yaml's schedule, not by the agent
    kind = kwargs.pop("kind")
    if kind not in AGENTS:
        raise ConfigError(f"agent.kind={kind!r} is not one of: {', '.join(AGENTS)}")
    kwargs["hidden"] = tuple(kwargs["hidden"])
    for key in ("actor_lr", "critic_lr", "alpha_lr", "initial_alpha", "tau"):
        require_positive(f"agent.{key}", kwargs[key])
    if not 0.0 <= require_number("agent.gamma", kwargs["gamma"]) < 1.0:
        raise ConfigError(f"agent.gamma={kwargs['gamma']} must lie in [0, 1)")
    needs_64 = ConfigError(
        f"the agent's image encoder takes 64x64 images, the camera gives {image_shape[1]}x{image_shape[0]}; "
        "set camera.width_px=64 camera.height_px=64"
    )
    if kind == "slac":
        return kind, _slac_config(kwargs, image_shape, needs_64)
    return kind, _sac_config(kwargs, image_shape, needs_64)


def make_agent(agent: DictConfig, env: "gym.Env", device: "torch.device") -> "Agent":
    """Builds the agent that the `agent` config group names (agent.kind: slac | sac) for env's
    action and observation sizes; a bad value raises ConfigError naming the key."""
    kind, config = agent_config(agent, env.observation_space["image"].shape)
    dims = vector_dims(env.observation_space)
    try:
        if kind == "slac":
            from slac_robot.agent.slac import SlacAgent

            return SlacAgent(env.action_space.shape[0], dims, config, device)
        from slac_robot.agent.sac_baseline import SacAgent

        return SacAgent(env.action_space.shape[0], dims, config, device)
    except KeyError as error:  # an observation the agent reads is not there
        raise ConfigError(f"agent={agent.name}: {error.args[0]}") from None


def _slac_config(kwargs, image_shape, needs_64) -> "SlacConfig":
    from slac_robot.agent.slac import SlacConfig

    require_int("agent.sequence_length", kwargs["sequence_length"], minimum=2)
    for key in ("z1_dim", "z2_dim"):
        require_int(f"agent.{key}", kwargs[key])
    for key in ("width", "image_std", "model_lr"):
        require_positive(f"agent.{key}", kwargs[key])
    if tuple(image_shape[:2]) != (64, 64):
        raise needs_64
    if kwargs["concurrent_updates"] and kwargs["shared_batch"]:
        raise ConfigError("agent.concurrent_updates=true runs the model and SAC steps of separate batches at once; "
                          "with agent.shared_batch=true the SAC step needs the model's forward pass first: "
                          "set one of them false")
    return SlacConfig(**kwargs)


def _sac_config(kwargs, image_shape, needs_64) -> "SacConfig":
    from slac_robot.agent.sac_baseline import AUGMENTATIONS, OBSERVATIONS, SacConfig

    kwargs["state_keys"] = tuple(kwargs["state_keys"])
    for key, choices in (("observation", OBSERVATIONS), ("augmentation", AUGMENTATIONS)):
        if kwargs[key] not in choices:
            raise ConfigError(f"agent.{key}={kwargs[key]!r} is not one of: {', '.join(choices)}")
    require_int("agent.frame_stack", kwargs["frame_stack"])
    require_int("agent.feature_dim", kwargs["feature_dim"])
    require_int("agent.shift_px", kwargs["shift_px"], minimum=0)
    for key in ("width", "encoder_tau"):
        require_positive(f"agent.{key}", kwargs[key])
    if kwargs["observation"] == "pixels" and tuple(image_shape[:2]) != (64, 64):
        raise needs_64
    return SacConfig(**kwargs)


def make_replay(
    replay: DictConfig, directory: pathlib.Path, env: "gym.Env", sequence_length: int, episode_steps: int
) -> "SequenceReplay":
    """The on-disk sequence replay for env's observations (episodes already there are loaded):
    the image and every vector observation, whichever the agent reads (the probe reads the rest)."""
    from slac_robot.agent.replay import SequenceReplay

    return SequenceReplay(
        directory,
        action_dim=env.action_space.shape[0],
        capacity_steps=require_int("replay.capacity_steps", replay.capacity_steps),
        sequence_length=sequence_length,
        image_shape=env.observation_space["image"].shape,
        extras=vector_dims(env.observation_space),
        expected_episode_steps=episode_steps,
    )
