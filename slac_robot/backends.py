"""The one place where config becomes objects: backend parts, task, safety filter, policy.

Hydra configs stop here: everything built below gets plain keyword arguments. Each backend is a
function returning its Robot, agent Camera, ControlClock and (optional) view Camera; nothing
else in the package asks which backend it runs on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from omegaconf import DictConfig, OmegaConf

from slac_robot.env import ValveTurnEnv
from slac_robot.config import ConfigError, load_config, require_int, require_positive
from slac_robot.interfaces import Camera, ControlClock, Robot
from slac_robot.policies import Policy, RandomPolicy, ScriptedTurnPolicy
from slac_robot.safety import ActionFilter
from slac_robot.tasks import RewardWeights, ValveTurnTask

if TYPE_CHECKING:
    from slac_robot.calibration.boards import Board
    from slac_robot.hardware.cameras.image import CropRegion
    from slac_robot.sim import ValveSimulation


class BackendParts(NamedTuple):
    robot: Robot
    camera: Camera
    clock: ControlClock
    view_camera: Camera | None


def _plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


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
        ),
    )


def _sim_parts(backend: dict[str, Any], camera: dict[str, Any], with_view: bool) -> BackendParts:
    from slac_robot.sim import SimCamera, SimClock, SimRobot
    from slac_robot.sim.scene import AGENT_CAMERA, VIEW_CAMERA

    simulation = make_simulation(backend)
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
    return BackendParts(robot, agent_camera, SimClock(simulation), view_camera)


BACKENDS: dict[str, Callable[[dict[str, Any], dict[str, Any], bool], BackendParts]] = {
    "sim": _sim_parts,
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


def make_task(task: DictConfig) -> ValveTurnTask:
    """Builds the valve-turning task from the `task` config group."""
    kwargs = _plain(task)
    reward = kwargs.pop("reward")
    try:
        weights = RewardWeights(**reward)
    except TypeError as error:
        raise ConfigError(f"task.reward: {error}; the valid keys are those of RewardWeights") from None
    return ValveTurnTask(reward=weights, **kwargs)


def make_action_filter(safety: DictConfig) -> ActionFilter:
    """Builds the action filter from the `safety` config section."""
    return ActionFilter(safety.joint_lower_rad, safety.joint_upper_rad)


def make_env(cfg: DictConfig, render: bool = False) -> ValveTurnEnv:
    """Assembles the environment for cfg.backend, cfg.task, cfg.camera and cfg.safety.

    render: also build the third-person view camera, for `env.render()` and videos."""
    name = cfg.backend.name
    if name not in BACKENDS:
        raise ConfigError(f"backend.name={name!r} is not one of: {', '.join(BACKENDS)}")
    task = make_task(cfg.task)
    action_filter = make_action_filter(cfg.safety)
    camera = _plain(cfg.camera)
    parts = BACKENDS[name](_plain(cfg.backend), camera, render)
    try:
        return ValveTurnEnv(
            robot=parts.robot,
            camera=parts.camera,
            clock=parts.clock,
            task=task,
            action_filter=action_filter,
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
