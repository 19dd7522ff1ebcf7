"""The MuJoCo scene built from ROBEL's D'Claw valve files: structure, clock, control, markers."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from slac_robot.sim import SimClock, SimRobot, ValveSimulation
from slac_robot.sim import scene
from omegaconf import OmegaConf

from slac_robot.backends import make_simulation
from slac_robot.config import ConfigError
from slac_robot.tasks import wrap_to_pi

from conftest import compose


def build_simulation(backend, physics_timestep_s=None, substeps=None) -> ValveSimulation:
    """A ValveSimulation from the `backend` config section (no renderer), optionally retimed."""
    section = OmegaConf.to_container(backend)
    section["physics_timestep_s"] = physics_timestep_s or section["physics_timestep_s"]
    section["substeps"] = substeps or section["substeps"]
    return make_simulation(section)


@pytest.fixture(scope="module")
def config():
    return compose()


@pytest.fixture(scope="module")
def sim(config):
    return build_simulation(config.backend)


@pytest.fixture(scope="module")
def robot(sim, config):
    return SimRobot(
        sim,
        torque_constant_nm_per_a=config.backend.torque_constant_nm_per_a,
        ambient_temperature_c=config.backend.ambient_temperature_c,
    )


@pytest.fixture(scope="module")
def reset_pose(config):
    return np.asarray(config.task.reset_pose_rad, dtype=float)


def test_robel_root_finds_the_scene_files():
    root = scene.robel_root()
    assert root.name == "robel"
    assert (root / scene.ROBEL_SCENE).is_file()
    # The scene's includes (the claw, the station, the valve) resolve from there.
    assert (root / "robel-scenes" / "dclaw" / "assets" / "chain3xh.xml").is_file()


def test_scene_has_claw_valve_cameras_and_mocap_goal(sim):
    model = sim.model
    # 9 claw joints and the valve; ROBEL's hardware overlay chain (9 more joints) is left out.
    assert model.nq == 10
    assert model.nv == 10
    assert model.nu == 9
    for name in scene.CLAW_JOINTS:
        assert model.joint(name).type[0] == mujoco.mjtJoint.mjJNT_HINGE
    assert model.joint(scene.VALVE_JOINT).type[0] == mujoco.mjtJoint.mjJNT_HINGE
    cameras = {model.camera(i).name for i in range(model.ncam)}
    assert {scene.AGENT_CAMERA, scene.VIEW_CAMERA} <= cameras
    assert model.nmocap == 1
    assert model.body_mocapid[model.body(scene.GOAL_BODY).id] == 0
    # The markers exist and are drawn in the marker group, not colliding with anything.
    for geom in ("goal_marker", "valve_marker"):
        g = model.geom(geom)
        assert g.group[0] == scene.MARKER_GROUP
        assert g.contype[0] == 0 and g.conaffinity[0] == 0
    # Each actuator drives the claw joint of the same name.
    for act_id, joint in zip(sim.claw_actuator_index, scene.CLAW_JOINTS):
        assert model.actuator_trnid[act_id, 0] == model.joint(joint).id


def test_the_agent_sees_opaque_collision_primitives(sim):
    model = sim.model
    collision = model.geom_group == scene.COLLISION_GROUP
    assert collision.any()
    assert np.all(model.geom_rgba[collision, 3] == 1.0)


@pytest.mark.parametrize("timestep, substeps", [(None, None), (0.002, 7)])
def test_clock_tick_advances_time_by_one_control_period(config, timestep, substeps):
    sim = build_simulation(config.backend, timestep, substeps)
    clock = SimClock(sim)
    expected_period = sim.model.opt.timestep * sim.substeps
    if timestep is None:
        assert expected_period == pytest.approx(
            config.backend.physics_timestep_s * config.backend.substeps
        )
    else:
        assert sim.model.opt.timestep == timestep
        assert sim.substeps == substeps
    assert clock.period_s == pytest.approx(expected_period)
    start = clock.now_s()
    for n in range(1, 4):
        clock.tick()
        assert clock.now_s() - start == pytest.approx(n * expected_period, rel=1e-9)


def test_parse_drops_the_xml_declaration_after_a_comment(tmp_path):
    text = (
        "<!-- Copyright: a licence comment comes first -->\n"
        '<?xml version="1.0"?>\n'
        '<mujoco model="tiny"><worldbody><geom name="ball" size="0.1"/></worldbody></mujoco>\n'
    )
    path = tmp_path / "tiny.xml"
    path.write_text(text)
    # The raw text is invalid XML: a declaration is only allowed at the very start.
    with pytest.raises(ET.ParseError):
        ET.fromstring(text)
    root = scene._parse(path)
    assert root.tag == "mujoco"
    assert root.get("model") == "tiny"
    assert root.find("worldbody/geom").get("name") == "ball"
    model = mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))
    assert model.ngeom == 1


def test_parse_reads_a_file_without_declaration(tmp_path):
    path = tmp_path / "plain.xml"
    path.write_text('<mujoco model="plain"><worldbody/></mujoco>')
    assert scene._parse(path).get("model") == "plain"


def test_commanded_joint_targets_are_reached(robot, sim, reset_pose, safety_limits):
    lower, upper = safety_limits
    # Small offsets from the reset pose (fingers raised, clear of the valve); the middle joints
    # sit on their lower limit at the reset pose, so they only move up.
    offsets = np.array([0.1, 0.15, -0.1, -0.1, 0.1, 0.1, 0.05, 0.2, -0.15])
    target = reset_pose + offsets
    assert np.all(target >= lower) and np.all(target <= upper)
    start = robot.place(reset_pose, 0.0)
    assert np.max(np.abs(start.joint_pos_rad - target)) >= 0.1  # the test asks for motion
    robot.command(target)
    clock = SimClock(sim)
    for _ in range(20):
        clock.tick()
    reached = robot.read()
    np.testing.assert_allclose(reached.joint_pos_rad, target, atol=0.05)
    assert np.all(np.abs(reached.joint_vel_rad_s) < 0.5)  # settled, not swinging through


def test_place_puts_claw_and_valve_exactly_at_rest(robot, reset_pose):
    state = robot.place(reset_pose, 0.7)
    np.testing.assert_array_equal(state.joint_pos_rad, reset_pose)
    assert state.valve_pos_rad == 0.7
    assert np.all(state.joint_vel_rad_s == 0.0)


def _direction_from_valve_axis(sim, geom: str) -> float:
    axis = sim.data.joint(scene.VALVE_JOINT).xanchor
    pos = sim.data.geom(geom).xpos
    return math.atan2(pos[1] - axis[1], pos[0] - axis[0])


def _angle_gap(a: float, b: float) -> float:
    return abs(wrap_to_pi(a - b))


@pytest.mark.parametrize("angle", [-3.0, -math.pi / 2, -0.4, 0.0, 0.7, math.pi / 2, 2.5, 3.1])
def test_goal_and_valve_markers_point_the_same_way_at_the_goal(robot, sim, reset_pose, angle):
    robot.show_goal(angle)
    robot.place(reset_pose, angle)
    assert _angle_gap(_direction_from_valve_axis(sim, "goal_marker"), angle) < 0.01
    assert _angle_gap(_direction_from_valve_axis(sim, "valve_marker"), angle) < 0.01


def test_markers_follow_goal_and_valve_independently(robot, sim, reset_pose):
    robot.show_goal(1.2)
    robot.place(reset_pose, -0.9)
    assert _angle_gap(_direction_from_valve_axis(sim, "goal_marker"), 1.2) < 0.01
    assert _angle_gap(_direction_from_valve_axis(sim, "valve_marker"), -0.9) < 0.01
    # The goal marker sits at the configured radius from the valve axis and height.
    backend = compose().backend
    axis = sim.data.joint(scene.VALVE_JOINT).xanchor
    marker = sim.data.geom("goal_marker").xpos
    assert np.linalg.norm(marker[:2] - axis[:2]) == pytest.approx(backend.goal_marker_radius_m, abs=1e-6)
    assert marker[2] == pytest.approx(backend.goal_marker_height_m, abs=1e-6)


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_the_valve_turns_freely_past_whole_turns(robot, sim, reset_pose, direction):
    """The real valve has no stop. ROBEL's hinge range (+-2pi) stopped a valve whose angle had
    wandered there through the resets' short-way turns, at what reads as 0 rad."""
    robot.place(reset_pose, direction * 5.9)  # fingers lifted clear, the valve near a former stop
    sim.data.qfrc_applied[sim.valve_qvel_index] = direction * 0.05  # N m, pushing it on
    try:
        for _ in range(20):
            sim.step_period()
    finally:
        sim.data.qfrc_applied[sim.valve_qvel_index] = 0.0
    assert direction * robot.read().valve_pos_rad > 2 * math.pi + 0.3


def _changed_pixels(env, goal_rad: float, valve_a_rad: float, valve_b_rad: float) -> int:
    """Pixels of the agent's image that change by more than 30 (sum over RGB) between the valve
    at valve_a_rad and at valve_b_rad, the claw at its reset pose and the goal shown at goal_rad."""
    images = []
    for valve_rad in (valve_a_rad, valve_b_rad):
        observation, _ = env.reset(seed=0, options={"goal_rad": goal_rad, "valve_rad": valve_rad})
        images.append(observation["image"].astype(int))
    return int((np.abs(images[0] - images[1]).sum(-1) > 30).sum())


def test_the_prong_marker_tells_the_goal_from_its_120_degree_look_alikes(make_fresh_env):
    """The three prongs look alike every 120 degrees: only the valve's marker tells the goal from
    the angles 120 degrees off it. With the old thin stripe SLAC held the valve there
    (docs/results/comparison); the red prong changes ~3x as many pixels."""
    goal = math.pi / 2
    look_alikes = (goal + 2 * math.pi / 3, goal - 2 * math.pi / 3)
    changed = {}
    for marker in ("stripe", "prong"):
        env = make_fresh_env(compose(f"backend.valve_marker={marker}"))
        changed[marker] = [_changed_pixels(env, goal, goal, other) for other in look_alikes]
        if marker == "prong":
            ten_degrees = _changed_pixels(env, goal, goal, goal + math.radians(10))
    for stripe, prong in zip(changed["stripe"], changed["prong"]):
        assert stripe > 0  # the stripe showed, faintly
        assert prong >= 2 * stripe
        assert prong >= ten_degrees / 2  # as plain to see as a few degrees of turn


def test_an_unknown_valve_marker_is_a_config_error_that_names_the_choices(config):
    section = OmegaConf.to_container(config.backend)
    section["valve_marker"] = "flag"
    with pytest.raises(ConfigError, match=r"backend.valve_marker='flag' is not one of: prong, stripe"):
        make_simulation(section)


def test_a_backend_section_from_before_the_valve_marker_key_draws_the_stripe_it_saw(config):
    section = OmegaConf.to_container(config.backend)
    del section["valve_marker"]  # a run's config.yaml written before 2026-12
    old = make_simulation(section)
    assert old.model.geom("valve_marker").size[0] == pytest.approx(0.006)  # the stripe's radius
    section["valve_marker"] = "prong"
    assert make_simulation(section).model.geom("valve_marker").size[0] == pytest.approx(0.0225)
