"""The one place where config becomes objects: backend parts, task, safety filter, policy.

Hydra configs stop here: everything built below gets plain keyword arguments. Each backend is a
function returning its Robot, agent Camera, ControlClock and (optional) view Camera; nothing
else in the package asks which backend it runs on.
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from omegaconf import DictConfig, OmegaConf

from slac_robot.env import ValveTurnEnv
from slac_robot.config import ConfigError, load_config, require_int, require_positive
from slac_robot.interfaces import Camera, ControlClock, Robot
from slac_robot.policies import Policy, RandomPolicy, ScriptedTurnPolicy
from slac_robot.safety import ActionFilter
from slac_robot.tasks import RewardWeights, ValveTurnTask

if TYPE_CHECKING:
    import gymnasium as gym
    import torch

    from slac_robot.agent.agent import SlacAgent
    from slac_robot.agent.replay import SequenceReplay
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


def make_agent(agent: DictConfig, env: "gym.Env", device: "torch.device") -> "SlacAgent":
    """Builds the SLAC agent for env's action and goal sizes from the `agent` config group."""
    from slac_robot.agent.agent import SlacAgent, SlacConfig

    kwargs = _plain(agent)
    kwargs.pop("name")
    kwargs["hidden"] = tuple(kwargs["hidden"])
    require_int("agent.sequence_length", kwargs["sequence_length"], minimum=2)
    for key in ("z1_dim", "z2_dim"):
        require_int(f"agent.{key}", kwargs[key])
    for key in ("width", "image_std", "model_lr", "actor_lr", "critic_lr", "alpha_lr", "initial_alpha", "tau"):
        require_positive(f"agent.{key}", kwargs[key])
    if not 0.0 <= kwargs["gamma"] < 1.0:
        raise ConfigError(f"agent.gamma={kwargs['gamma']} must lie in [0, 1)")
    image_shape = env.observation_space["image"].shape
    if image_shape[:2] != (64, 64):
        raise ConfigError(
            f"SLAC's encoder and decoder take 64x64 images, the camera gives {image_shape[1]}x{image_shape[0]}; "
            "set camera.width_px=64 camera.height_px=64"
        )
    goal_space = env.observation_space.spaces.get("goal")
    goal_dim = goal_space.shape[0] if goal_space is not None else 0
    return SlacAgent(env.action_space.shape[0], goal_dim, SlacConfig(**kwargs), device)


def make_replay(
    replay: DictConfig, directory: pathlib.Path, env: "gym.Env", sequence_length: int, episode_steps: int
) -> "SequenceReplay":
    """The on-disk sequence replay for env's observations (episodes already there are loaded)."""
    from slac_robot.agent.replay import SequenceReplay

    goal_space = env.observation_space.spaces.get("goal")
    return SequenceReplay(
        directory,
        action_dim=env.action_space.shape[0],
        capacity_steps=require_int("replay.capacity_steps", replay.capacity_steps),
        sequence_length=sequence_length,
        image_shape=env.observation_space["image"].shape,
        extras={"goal": goal_space.shape[0]} if goal_space is not None else {},
        expected_episode_steps=episode_steps,
    )
