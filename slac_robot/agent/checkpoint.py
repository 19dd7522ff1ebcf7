"""Checkpoints: written atomically, verified when read, never written with non-finite weights.

A checkpoint holds the agent (networks, optimisers, temperature, update counters), the training
counters and every random number generator's state, so that a resumed run continues exactly.
The published policy (runtime/learner.py) is written and read the same way.

Verification: `save_checkpoint` refuses a state with a non-finite floating-point tensor (the
weights diverged: the newest good checkpoint must stay the newest), and stores beside the state
the SHA-256 of its content (`state_digest`: every tensor's dtype, shape and bytes, every other
value, in order). `load_checkpoint` recomputes it and checks every tensor again: damaged bytes
inside a tensor, which torch.load does not notice, or a file cut short, raise
`CorruptCheckpoint`; `set_aside` moves such a file to `corrupt/` beside it (never deletes it),
and `load_latest_checkpoint` then tries the next older one. Files written before digests were
stored are read without one, the non-finite check still applies.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pathlib
import re
import warnings
from typing import Any

import numpy as np
import torch

from slac_robot.storage import fsync_directory, write_atomically

CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d{9})\.pt$")
DIGEST_KEY = "sha256"  # the entry of a saved state that holds its digest
CORRUPT_DIR = "corrupt"


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected; the message names the file and the fix."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint or policy file that cannot be trusted: unreadable, its digest does not match
    its content, or it holds non-finite weights."""


class NonFiniteWeights(CheckpointError):
    """The state about to be written holds non-finite values: the agent diverged."""


def checkpoint_path(directory: pathlib.Path, env_steps: int) -> pathlib.Path:
    return pathlib.Path(directory) / f"checkpoint_{env_steps:09d}.pt"


def save_checkpoint(path: pathlib.Path, state: dict[str, Any]) -> None:
    """Writes state with its digest to path atomically (a temporary file, fsync, rename, fsync of
    the folder; a failed write removes the temporary and raises an OSError naming path).
    Raises NonFiniteWeights, writing nothing, when a tensor holds NaN or inf."""
    path = pathlib.Path(path)
    bad = non_finite_entries(state)
    if bad:
        raise NonFiniteWeights(
            f"{path.name} not written: {len(bad)} tensors hold NaN or inf ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}): the agent's weights diverged"
        )
    buffer = io.BytesIO()
    torch.save({**state, DIGEST_KEY: state_digest(state)}, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, buffer.getbuffer())


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
    """Reads and verifies one checkpoint. A missing file raises CheckpointError; an unreadable,
    damaged or foreign one CorruptCheckpoint, naming it."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a run directory or checkpoint file that does")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CorruptCheckpoint(f"checkpoint {path} is unreadable ({type(error).__name__}: {first_line(error)})") from None
    if not isinstance(state, dict) or "agent" not in state:
        raise CorruptCheckpoint(f"checkpoint {path} is not a slac-robot checkpoint (no 'agent' entry)")
    return verified(path, state, "checkpoint")


def load_policy_file(path: pathlib.Path, what: str = "policy file") -> dict[str, Any]:
    """Reads and verifies a policy file (`{"policy": weights, ...}`: a learner's policy.pt, a
    run's best_policy.pt) without its digest entry. A missing file raises FileNotFoundError; an
    unreadable, damaged or foreign one CorruptCheckpoint, naming it as `what`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises several types for damaged files
        raise CorruptCheckpoint(f"{what} {path} is unreadable ({type(error).__name__}: {first_line(error)})") from None
    if not isinstance(state, dict) or "policy" not in state:
        raise CorruptCheckpoint(f"{what} {path} is not a published policy (no 'policy' entry)")
    return verified(path, state, what)


def verified(path: pathlib.Path, state: dict[str, Any], what: str) -> dict[str, Any]:
    """state (as read from path) without its digest entry, after checking the digest and that
    every tensor is finite; CorruptCheckpoint names path and what is wrong."""
    state = dict(state)
    digest = state.pop(DIGEST_KEY, None)
    if digest is not None and digest != state_digest(state):
        raise CorruptCheckpoint(f"{what} {path} is damaged: its content does not match its SHA-256")
    bad = non_finite_entries(state)
    if bad:
        raise CorruptCheckpoint(f"{what} {path} holds NaN or inf in {len(bad)} tensors ({', '.join(bad[:3])})")
    return state


def set_aside(path: pathlib.Path, reason: str) -> pathlib.Path | None:
    """Moves a damaged file into corrupt/ beside it (never deletes it), with a warning naming it
    and why; returns where it went (None when it could not be moved: then it stays in place)."""
    path = pathlib.Path(path)
    corrupt = path.parent / CORRUPT_DIR
    target = corrupt / path.name
    number = 1
    while target.exists():  # an earlier damaged file of that name is kept too
        target = corrupt / f"{path.name}.{number}"
        number += 1
    try:
        corrupt.mkdir(exist_ok=True)
        os.replace(path, target)
        fsync_directory(path.parent)
    except OSError as error:
        warnings.warn(f"{reason}; left in place (moving it to {corrupt} failed: {error})", stacklevel=2)
        return None
    warnings.warn(f"{reason}; moved to {target}", stacklevel=2)
    return target


def load_latest_checkpoint(directory: pathlib.Path, move_damaged: bool = True) -> tuple[pathlib.Path, dict[str, Any]]:
    """The newest sound checkpoint in a folder. Damaged newer ones are named in a warning and
    (move_damaged) moved to its corrupt/ folder. Raises CheckpointError when there is none."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path)
        except CorruptCheckpoint as error:
            if move_damaged:
                set_aside(path, f"{error}; trying an older checkpoint")
            else:
                warnings.warn(f"{error}; trying an older checkpoint", stacklevel=2)
        except CheckpointError as error:  # gone since the listing (pruned by a running learner)
            warnings.warn(f"{error}; trying an older checkpoint", stacklevel=2)
    raise CheckpointError(
        f"no readable checkpoint in {directory}; start a new run, or point resume at another run directory"
    )


def non_finite_entries(state: Any, prefix: str = "") -> list[str]:
    """The names (dotted paths) of the floating-point tensors, arrays and numbers in a nested
    state (dicts, lists, tuples) that hold NaN or inf."""
    found: list[str] = []
    _walk_non_finite(state, prefix, found)
    return found


def _walk_non_finite(value: Any, name: str, found: list[str]) -> None:
    if isinstance(value, torch.Tensor):
        if (value.is_floating_point() or value.is_complex()) and not _finite(value):
            found.append(name or "(state)")
    elif isinstance(value, np.ndarray):
        if np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all():
            found.append(name or "(state)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            found.append(name or "(state)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk_non_finite(item, f"{name}.{key}" if name else str(key), found)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _walk_non_finite(item, f"{name}[{index}]", found)


def _finite(tensor: torch.Tensor) -> bool:
    # numpy's isfinite: torch's isfinite().all() takes 17x as long (9 ms for 2M floats, one
    # thread), time the actor spends between two ticks when it takes up a policy.
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.bfloat16, torch.float16):  # numpy has no bfloat16
        tensor = tensor.float()
    return bool(np.isfinite(tensor.resolve_conj().numpy()).all())


def state_digest(state: Any) -> str:
    """SHA-256 over a nested state's content, in order: each tensor's and array's dtype, shape
    and bytes, each key, each other value's type and repr. Two states have the same digest when
    torch.save of one and torch.load give the other."""
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def _feed(digest, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"array {array.dtype.str} {array.shape};".encode())
        digest.update(array.view(np.uint8).data if array.size else b"")
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)}{{".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)}[".encode())
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(f"{type(value).__name__} {value!r};".encode())


def first_line(error: Exception) -> str:
    """An exception's message cut to its first line (torch's run over many)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
