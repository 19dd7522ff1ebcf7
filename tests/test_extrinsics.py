"""`slac-robot locate-camera` on a synthetic view of a board lying at a known place, and the
simulated agent camera placed from the result."""

from __future__ import annotations

import cv2
import mujoco
import numpy as np
import pytest
from omegaconf import OmegaConf

from slac_robot.backends import make_simulation
from slac_robot.calibration.boards import Board
from slac_robot.calibration.extrinsics import pose_matrix
from slac_robot.calibration.intrinsics import CalibrationRecord, save_intrinsics
from slac_robot.cli import main
from slac_robot.config import load_config
from slac_robot.hardware.cameras.image import ImagePipeline, ImageSettings
from synthetic_board import BoardCamera
from test_calibration import CHARUCO, CHARUCO_OVERRIDES, KNOWN

# The board lies face-up, centred under the valve axis: its 225 x 150 mm span puts its
# top-left corner (its origin) at x = -0.1125, y = +0.075 in the base frame.
BOARD_XYZ_M, BOARD_RPY_DEG = (-0.1125, 0.075, 0.0), (180.0, 0.0, 0.0)
AGENT_PX = 64


def camera_looking_at(position, target, roll_deg: float) -> np.ndarray:
    """base_T_camera of an OpenCV camera (x right, y down, z forward) at `position` aimed at
    `target`, rolled about its line of sight."""
    forward = np.subtract(target, position) / np.linalg.norm(np.subtract(target, position))
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    roll = cv2.Rodrigues(np.radians(roll_deg) * np.array([0.0, 0.0, 1.0]))[0]
    transform = np.eye(4)
    transform[:3, :3] = np.column_stack([right, down, forward]) @ roll
    transform[:3, 3] = position
    return transform


TRUE_BASE_T_CAMERA = camera_looking_at((0.22, -0.20, 0.30), (0.0, 0.0, 0.03), roll_deg=4.0)


@pytest.fixture(scope="module")
def located(tmp_path_factory):
    """Runs locate-camera on a photo of the board from TRUE_BASE_T_CAMERA; returns the folder."""
    folder = tmp_path_factory.mktemp("located")
    record = CalibrationRecord(0.1, np.zeros(1), np.zeros(9), ["synthetic"], "charuco", "today")
    save_intrinsics(folder / "intrinsics.yaml", KNOWN, record)
    board = Board(CHARUCO)
    camera_T_board = np.linalg.inv(TRUE_BASE_T_CAMERA) @ pose_matrix(BOARD_XYZ_M, BOARD_RPY_DEG)
    rvec = cv2.Rodrigues(camera_T_board[:3, :3])[0]
    photo = BoardCamera(board, KNOWN, noise_grey=2.0).photograph(rvec, camera_T_board[:3, 3])
    cv2.imwrite(str(folder / "board.png"), photo)
    code = main([
        "locate-camera", f"intrinsics={folder / 'intrinsics.yaml'}", f"image={folder / 'board.png'}",
        f"board_pose.xyz_m=[{','.join(map(str, BOARD_XYZ_M))}]", f"board_pose.rpy_deg=[{','.join(map(str, BOARD_RPY_DEG))}]",
        *CHARUCO_OVERRIDES,
    ])
    assert code == 0
    return folder


def test_the_camera_pose_is_recovered(located):
    fs = cv2.FileStorage(str(located / "extrinsics.yaml"), cv2.FILE_STORAGE_READ)
    base_T_camera = fs.getNode("base_T_camera").mat()
    error_px = fs.getNode("reprojection_error_px").real()
    fs.release()
    assert np.linalg.norm(base_T_camera[:3, 3] - TRUE_BASE_T_CAMERA[:3, 3]) < 0.003  # metres
    relative = base_T_camera[:3, :3].T @ TRUE_BASE_T_CAMERA[:3, :3]
    assert np.degrees(np.linalg.norm(cv2.Rodrigues(relative)[0])) < 0.3
    assert error_px < 0.3
    assert (located / "extrinsics_view.png").exists()


def test_the_simulated_camera_sees_points_where_the_real_agent_image_shows_them(located):
    cfg = load_config("rollout", [f"backend.agent_camera.from_extrinsics={located / 'extrinsics.yaml'}"])
    simulation = make_simulation(OmegaConf.to_container(cfg.backend, resolve=True))
    model, data = simulation.model, mujoco.MjData(simulation.model)
    mujoco.mj_forward(model, data)
    camera = model.camera("agent").id
    position, axes = data.cam_xpos[camera], data.cam_xmat[camera].reshape(3, 3)  # columns: right, up, back
    focal_px = AGENT_PX / 2 / np.tan(np.radians(model.cam_fovy[camera]) / 2)
    # Points around the valve, in the base frame.
    points = np.array([[0.0, 0.0, 0.05], [0.08, 0.0, 0.02], [-0.05, 0.06, 0.10], [0.03, -0.07, 0.0]])
    in_camera = (points - position) @ axes
    sim_px = np.column_stack([
        AGENT_PX / 2 - 0.5 + focal_px * in_camera[:, 0] / -in_camera[:, 2],
        AGENT_PX / 2 - 0.5 - focal_px * in_camera[:, 1] / -in_camera[:, 2],
    ])
    # The real agent image: the undistorted image's centred square region, resized to 64x64.
    region = ImagePipeline(ImageSettings(AGENT_PX, AGENT_PX), KNOWN.width_px, KNOWN.height_px).crop
    camera_T_base = np.linalg.inv(TRUE_BASE_T_CAMERA)
    full_px, _ = cv2.projectPoints(
        points, cv2.Rodrigues(camera_T_base[:3, :3])[0], camera_T_base[:3, 3], KNOWN.camera_matrix, None
    )
    scale = AGENT_PX / region.width_px
    real_px = (full_px.reshape(-1, 2) - [region.x_px, region.y_px] + 0.5) * scale - 0.5
    assert np.abs(sim_px - real_px).max() < 0.5  # agent pixels


def test_a_chessboard_or_a_missing_intrinsics_file_is_refused(located, tmp_path, capsys):
    image = f"image={located / 'board.png'}"
    assert main(["locate-camera", "board=checkerboard", f"intrinsics={located / 'intrinsics.yaml'}", image]) == 2
    assert "needs board=charuco: a chessboard's pose is ambiguous" in capsys.readouterr().err
    assert main(["locate-camera", f"intrinsics={tmp_path / 'x.yaml'}", image]) == 2
    assert "x.yaml does not exist; run `slac-robot calibrate-camera`" in capsys.readouterr().err


def test_a_missing_extrinsics_file_is_a_config_error(tmp_path):
    from slac_robot.config import ConfigError

    cfg = load_config("rollout", [f"backend.agent_camera.from_extrinsics={tmp_path / 'none.yaml'}"])
    with pytest.raises(ConfigError, match="extrinsics file .*none.yaml does not exist; run `slac-robot locate-camera`"):
        make_simulation(OmegaConf.to_container(cfg.backend, resolve=True))
