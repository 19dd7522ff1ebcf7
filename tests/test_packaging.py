"""The built wheel carries the package, its mapped sub-packages and the configs."""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    # Built from a copy of the sources, so that a stale build/ folder cannot leak into it.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("slac_robot", "hardware", "safety", "calibration", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(source)],
        check=True,
    )
    (path,) = out.glob("slac_robot-*.whl")
    return path


def test_wheel_holds_mapped_packages_and_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "slac_robot/safety/action_filter.py",
        "slac_robot/hardware/__init__.py",
        "slac_robot/calibration/__init__.py",
        "slac_robot/calibration/camera_calibration.py",
        "slac_robot/hardware/cameras/realsense.py",
        "slac_robot/configs/camera_device/realsense.yaml",
        "slac_robot/configs/board/charuco.yaml",
        "slac_robot/configs/calibrate-camera.yaml",
        "slac_robot/configs/rollout.yaml",
        "slac_robot/configs/backend/sim.yaml",
        "slac_robot/configs/task/_valve_turn.yaml",
        "slac_robot/configs/task/three_goal.yaml",
        "slac_robot/configs/policy/scripted.yaml",
        "slac_robot/configs/backend/_dynamixel.yaml",
        "slac_robot/configs/backend/emulated.yaml",
        "slac_robot/hardware/emulator/server.py",
        "slac_robot/hardware/99-dynamixel-ftdi-latency.rules",
        "slac_robot/calibration/robel_dclaw_joints.yaml",
    ):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "slac-robot = slac_robot.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_composes_its_configs_outside_the_repository(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    code = (
        "import slac_robot, slac_robot.config as c\n"
        "cfg = c.load_config('rollout', ['task=three_goal'])\n"
        "print(slac_robot.__file__)\n"
        "print(cfg.task.goal_setting, c.group_options('task'))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0].startswith(str(target))
    assert out[1] == "three_goal ['fixed', 'point_reach', 'random', 'three_goal']"
