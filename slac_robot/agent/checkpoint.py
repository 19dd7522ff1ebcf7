"""Checkpoints: written atomically, so that a crash mid-write never costs the previous one.

A checkpoint holds the agent (networks, optimisers, temperature, update counters), the training
counters and every random number generator's state, so that a resumed run continues exactly.
"""

from __future__ import annotations

import os
import pathlib
import re
import warnings
from typing import Any

import torch

CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d{9})\.pt$")


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected; the message names the file and the fix."""


def checkpoint_path(directory: pathlib.Path, env_steps: int) -> pathlib.Path:
    return pathlib.Path(directory) / f"checkpoint_{env_steps:09d}.pt"


def save_checkpoint(path: pathlib.Path, state: dict[str, Any]) -> None:
    """Writes state to path atomically: a temporary file, fsync, rename, fsync of the folder."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def list_checkpoints(directory: pathlib.Path) -> list[pathlib.Path]:
    """The checkpoints in a folder, oldest first (by the environment steps in their names)."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if CHECKPOINT_PATTERN.match(p.name))


def prune_checkpoints(directory: pathlib.Path, keep: int) -> None:
    """Deletes all but the newest `keep` checkpoints."""
    for path in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        path.unlink()


def load_checkpoint(path: pathlib.Path) -> dict[str, Any]:
    """Reads one checkpoint; a missing or unreadable file raises CheckpointError naming it."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a run directory or checkpoint file that does")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(error).__name__}: {error}); "
            "delete it to fall back on the previous checkpoint"
        ) from None
    if not isinstance(state, dict) or "agent" not in state:
        raise CheckpointError(f"checkpoint {path} is not a slac-robot checkpoint (no 'agent' entry)")
    return state


def load_latest_checkpoint(directory: pathlib.Path) -> tuple[pathlib.Path, dict[str, Any]]:
    """The newest readable checkpoint in a folder; unreadable newer ones are reported and skipped
    (never deleted). Raises CheckpointError when there is none."""
    candidates = list_checkpoints(directory)
    for path in reversed(candidates):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as error:
            warnings.warn(f"{error}; trying an older checkpoint", stacklevel=2)
    raise CheckpointError(
        f"no readable checkpoint in {directory}; start a new run, or point resume at another run directory"
    )
