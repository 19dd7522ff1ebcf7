"""Pictures of what the latent model has learnt, as in the SLAC paper's figure of image sequences.

Three rows per sequence: the ground truth x_{1:T+1}; the posterior's reconstructions (every frame
seen); the prior's open-loop predictions (only x_1 seen, then the actions).
"""

from __future__ import annotations

import pathlib
from typing import Any

import imageio.v2 as imageio
import numpy as np

from slac_robot.agent.base import PIXEL_OFFSET
from slac_robot.agent.slac import SlacAgent
from slac_robot.runtime.video import VideoWriter
from slac_robot.storage import write_atomically


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """(T, 3, H, W) in [-0.5, 0.5] -> (T, H, W, 3) uint8."""
    return np.clip((images.transpose(0, 2, 3, 1) + PIXEL_OFFSET) * 255.0, 0, 255).round().astype(np.uint8)


def model_rows(agent: SlacAgent, sample: dict[str, np.ndarray]) -> np.ndarray:
    """Ground truth, reconstruction and prediction of the first sequence in a replay sample:
    uint8 (3, T+1, H, W, 3)."""
    batch = agent.to_batch({k: v[:1] for k, v in sample.items()})
    reconstruction, prediction = agent.model.reconstruct_and_predict(batch.images, batch.actions,
                                                                     agent.proprio(batch))
    rows = [batch.images[0], reconstruction[0], prediction[0]]
    return np.stack([_to_uint8(r.float().cpu().numpy()) for r in rows])


def write_model_media(
    agent: SlacAgent, sample: dict[str, np.ndarray], stem: pathlib.Path, writer: Any, step: int, fps: float
) -> None:
    """Writes <stem>.png (the 3-row grid), <stem>.mp4 (the rows side by side, frame by frame) and
    the grid to TensorBoard (tag model/sequences) at `step`."""
    rows = model_rows(agent, sample)  # (3, T+1, H, W, 3)
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    write_atomically(pathlib.Path(f"{stem}.png"), imageio.imwrite("<bytes>", grid, format="png"))
    video = VideoWriter(pathlib.Path(f"{stem}.mp4"), fps, scale=4)
    try:
        for t in range(rows.shape[1]):
            video.append(np.concatenate(list(rows[:, t]), axis=1))
    finally:
        video.close()
    if writer is not None:
        writer.add_image("model/sequences", grid, step, dataformats="HWC")
