"""Sequence replay for SLAC: whole episodes, each frame stored once, every episode kept on disk.

Episodes
  An episode of T steps is T+1 observations o_0..o_T and T transitions: step k takes o_k to
  o_{k+1} with action a_k and reward r_k. Only the last step can end it: `terminated` (a true
  end: the learner must not bootstrap from o_T) or `truncated` (a time limit: not a
  termination). Observations are the image (H, W, 3) uint8 and the "extras" (named float32
  vectors, e.g. the goal); other observation keys are not stored.

On disk (crash safety)
  Each finished episode is one file `episode_<index>_<steps>.npz` in `directory`, written to a
  hidden temporary name in the same directory (`.episode_...tmp`, which readers ignore),
  flushed and fsync'ed, then hard-linked to its final name (atomic, and it never replaces an
  existing file, even with several writers) and the directory fsync'ed. A crash, even SIGKILL,
  loses at most the unfinished episode; a torn write leaves only a temporary file, and a write
  that fails (disk full, read-only) removes its temporary and raises an OSError naming the
  episode's file, the files before it untouched. Files are
  never deleted: eviction only drops episodes from memory. A file that cannot be read is moved
  to `corrupt/` with a warning that names it.

In memory
  Preallocated rings, oldest whole episodes evicted first: frames (capacity_steps +
  ceil(capacity_steps / expected_episode_steps), H, W, 3) uint8 with the extras beside them,
  and actions, rewards and terminations (capacity_steps, ...). At 64x64x3, 9 actions and a
  2-d goal that is 12,333 bytes per step plus 12,296 per episode: ~1.26 GB for 100k steps of
  40-step episodes. Shorter episodes than `expected_episode_steps` fill the frames first, and
  then fewer than capacity_steps steps are kept.

Windows (what `sample` returns)
  A window is L = sequence_length consecutive steps of one episode and the L+1 observations
  around them; windows never cross episodes. A window is named by its last step e; it covers
  steps e-L+1..e and observations e-L+1..e+1.
  pad_start=False: e runs over L-1..T-1 (T-L+1 windows; none when T < L).
  pad_start=True: e runs over 0..T-1 (T windows), so that every step is the last step of some
  window. Positions before the episode's start (index < 0) are padding: the observation there
  repeats o_0 (image and extras), the action is zeros, the reward 0, terminated False, and
  `valid` is False. This is the history an actor sees at time t < L when it pads its own input
  the same way: the first observation repeated, zero actions. Step i of a window (action i,
  reward i, terminated i, from observation i to i+1) is real exactly when valid[:, i] is.
  Windows are drawn uniformly (episodes weighted by their window counts), with replacement.

Several processes
  One process writes (an actor: `EpisodeWriter`, or a `SequenceReplay` that also samples),
  others read the same directory and call `refresh()` to load the episodes written since.
  Objects are not thread-safe.
"""

from __future__ import annotations

import io
import math
import os
import queue
import threading
import re
import warnings
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from slac_robot.config import ConfigError, require_int
from slac_robot.storage import named, remove_quietly

FORMAT_VERSION = 1
CORRUPT_DIR = "corrupt"
_EPISODE_FILE = re.compile(r"^episode_(\d+)_(\d+)\.npz$")  # episode_<index>_<steps>.npz
_INDEX_DIGITS = 8


class CorruptEpisodeError(Exception):
    """An episode file cannot be read or its arrays do not fit together."""


@dataclass(frozen=True)
class Episode:
    """One finished episode: T steps, T+1 observations.

    images (T+1, H, W, 3) uint8; extras: name -> (T+1, dim) float32; actions (T, A) float32;
    rewards (T,) float32; terminated / truncated: how the last step ended it; tripped: the kind
    of the safety fault that cut it short, "" when it was not. robot: the robot that recorded it
    and robot_episode its index among that robot's episodes (a session with several actors,
    runtime/ray_session.py); "" and -1 when one actor wrote the folder itself. period_error_p99_ms
    and overruns: how well that actor's control loop kept its rate over the episode (and the reset
    before it); nan and -1 when its loop was not paced or not measured."""

    images: np.ndarray
    extras: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool
    tripped: str = ""
    robot: str = ""
    robot_episode: int = -1
    period_error_p99_ms: float = math.nan
    overruns: int = -1

    @property
    def steps(self) -> int:
        return len(self.actions)


def episode_file_name(index: int, steps: int) -> str:
    """The file name of the episode with this index and number of steps."""
    return f"episode_{index:0{_INDEX_DIGITS}d}_{steps}.npz"


def episode_files_of_rows(replay_dir: Path, env_steps: Sequence[int]) -> list[tuple[int, Path]]:
    """(steps, file) of the episode behind each row of a one-actor run's train_episodes.csv, given
    the rows' env_steps in order: the k-th row (k from 0) is the replay's k-th episode, of the
    row's step increment. The files need not exist; the caller says what a missing one means."""
    files, previous_steps = [], 0
    for index, total_steps in enumerate(env_steps):
        steps, previous_steps = total_steps - previous_steps, total_steps
        files.append((steps, replay_dir / episode_file_name(index, steps)))
    return files


def _parse_name(name: str) -> tuple[int, int] | None:
    """(index, steps) of an episode file name, or None for any other name (temporary files)."""
    match = _EPISODE_FILE.match(name)
    return (int(match[1]), int(match[2])) if match else None


def _list_episode_files(directory: Path) -> list[tuple[int, int, str]]:
    """(index, steps, name) of the episode files in directory, oldest index first."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            parsed = _parse_name(entry.name)
            if parsed is not None:
                found.append((*parsed, entry.name))
    return sorted(found)


def recorded_episodes(directory: str | os.PathLike) -> tuple[int, int]:
    """(episodes, steps) of the finished episode files in a replay folder (0, 0 when it is missing)."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0, 0
    files = _list_episode_files(directory)
    return len(files), sum(steps for _, steps, _ in files)


def _fsync_directory(directory: Path) -> None:
    """Makes the directory's entries (a new name) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_episode(directory: Path, index: int, episode: Episode) -> Path:
    """Writes `episode` atomically as episode_<index>_<steps>.npz, or under the next free index
    when that name exists (another writer took it); returns the file's path. Never replaces a
    file. Two writers racing may give two files the same index (with different step counts):
    both are kept, and readers order them by index."""
    return place_episode_file(directory, index, episode.steps, episode_bytes(episode))


def episode_bytes(episode: Episode) -> bytes:
    """The content of an episode file (a compressed npz), as write_episode stores it."""
    arrays = {
        "format_version": np.int64(FORMAT_VERSION),
        "obs_image": episode.images,
        "action": episode.actions,
        "reward": episode.rewards,
        "terminated": np.bool_(episode.terminated),
        "truncated": np.bool_(episode.truncated),
        "tripped": np.str_(episode.tripped),
        **{f"obs_{name}": values for name, values in episode.extras.items()},
    }
    if episode.robot:
        arrays.update(robot=np.str_(episode.robot), robot_episode=np.int64(episode.robot_episode))
    if episode.overruns >= 0:
        arrays.update(period_error_p99_ms=np.float64(episode.period_error_p99_ms), overruns=np.int64(episode.overruns))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def place_episode_file(directory: Path, index: int, steps: int, content: bytes) -> Path:
    """Stores the bytes of an episode file (episode_bytes) crash-safe as
    episode_<index>_<steps>.npz, or under the next free index (see write_episode): a hidden
    temporary, fsync'ed, hard-linked to its name, the directory fsync'ed. Returns the path; an
    OSError names the episode's file and leaves no temporary behind."""
    temporary = directory / f".{episode_file_name(index, steps)}.{os.getpid()}.{threading.get_ident()}.tmp"
    path = directory / episode_file_name(index, steps)
    try:
        with open(temporary, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        while True:
            path = directory / episode_file_name(index, steps)
            try:
                os.link(temporary, path)  # atomic, and unlike a rename it never replaces a file
                break
            except FileExistsError:
                index = _next_free_index(directory)
        _fsync_directory(directory)
    except OSError as error:  # disk full, read-only: the error names the episode's file
        raise named(error, path, instead_of_temporary=True) from None
    finally:
        remove_quietly(temporary)  # a failed write leaves no temporary to fill the disk
    return path


def episode_summary(path: Path) -> tuple[int, int, float, str]:
    """(index, steps, return, tripped) of an episode file, from its name and its small entries
    (no image is decompressed). Raises CorruptEpisodeError when it cannot be read."""
    parsed = _parse_name(Path(path).name)
    if parsed is None:
        raise CorruptEpisodeError(f"{path}: not an episode file name")
    try:
        with np.load(path, allow_pickle=False) as data:
            episode_return = float(np.sum(data["reward"], dtype=np.float64))
            tripped = str(data["tripped"]) if "tripped" in data.files else ""
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise CorruptEpisodeError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error
    return parsed[0], parsed[1], episode_return, tripped


@dataclass(frozen=True)
class EpisodeStamps:
    """What an episode file says of where it was recorded: robot and robot_episode ("", -1 when
    one actor wrote it itself), and its control loop's period_error_p99_ms and overruns (nan,
    -1 when the loop was not paced)."""

    robot: str = ""
    robot_episode: int = -1
    period_error_p99_ms: float = math.nan
    overruns: int = -1

    @property
    def origin(self) -> tuple[str, int]:
        return self.robot, self.robot_episode


def episode_stamps(path: Path | io.BytesIO) -> EpisodeStamps:
    """The stamps of an episode file (a path, or its bytes in a BytesIO); reads only those small
    entries, not the frames. Raises CorruptEpisodeError when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stamps = EpisodeStamps()
            if "robot" in data.files:
                stamps = replace(stamps, robot=str(data["robot"]), robot_episode=int(data["robot_episode"]))
            if "overruns" in data.files:
                stamps = replace(stamps, period_error_p99_ms=float(data["period_error_p99_ms"]),
                                 overruns=int(data["overruns"]))
            return stamps
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise CorruptEpisodeError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error


def _next_free_index(directory: Path) -> int:
    """One past the highest episode index in directory and its corrupt/ folder."""
    indices = [index for index, _, _ in _list_episode_files(directory)]
    if (directory / CORRUPT_DIR).is_dir():
        indices += [index for index, _, _ in _list_episode_files(directory / CORRUPT_DIR)]
    return max(indices, default=-1) + 1


def read_episode(
    path: Path, image_shape: tuple[int, int, int], action_dim: int, extras: Mapping[str, int]
) -> Episode:
    """Reads an episode file.

    Raises CorruptEpisodeError when the file cannot be read or its arrays do not fit together,
    and ConfigError when it is sound but was written for other shapes than those given."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise CorruptEpisodeError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error
    required = ("format_version", "obs_image", "action", "reward", "terminated", "truncated")
    missing = [key for key in required if key not in arrays]
    if missing:
        raise CorruptEpisodeError(f"{path}: lacks the arrays {missing}")
    version = int(arrays["format_version"])
    if version != FORMAT_VERSION:
        raise ConfigError(
            f"{path}: episode format {version}, this code reads format {FORMAT_VERSION}; "
            "read it with the slac-robot version that wrote it, or use a new replay directory"
        )
    images, actions, rewards = arrays["obs_image"], arrays["action"], arrays["reward"]
    parsed = _parse_name(path.name)
    steps = parsed[1] if parsed else len(actions)
    if (
        images.dtype != np.uint8
        or images.ndim != 4
        or actions.ndim != 2
        or rewards.shape != (steps,)
        or len(actions) != steps
        or len(images) != steps + 1
        or steps < 1
    ):
        raise CorruptEpisodeError(
            f"{path}: arrays do not fit together for {steps} steps (images {images.shape} "
            f"{images.dtype}, actions {actions.shape}, rewards {rewards.shape})"
        )
    fix = "pass the shapes this directory was written with, or use a new replay directory"
    if images.shape[1:] != tuple(image_shape):
        raise ConfigError(f"{path}: holds images of shape {images.shape[1:]}, the replay expects {tuple(image_shape)}; {fix}")
    if actions.shape[1] != action_dim:
        raise ConfigError(f"{path}: holds {actions.shape[1]}-d actions, the replay expects action_dim={action_dim}; {fix}")
    episode_extras = {}
    for name, dim in extras.items():
        values = arrays.get(f"obs_{name}")
        if values is None:
            stored = sorted(key[4:] for key in arrays if key.startswith("obs_") and key != "obs_image")
            raise ConfigError(f"{path}: holds no {name!r} observations (it holds {stored}), the replay expects extras {dict(extras)}; {fix}")
        if values.shape != (steps + 1, dim):
            if len(values) != steps + 1:
                raise CorruptEpisodeError(f"{path}: {name!r} has {len(values)} rows for {steps + 1} observations")
            raise ConfigError(f"{path}: holds {values.shape[1:]} {name!r} observations, the replay expects extras[{name!r}]={dim}; {fix}")
        episode_extras[name] = values.astype(np.float32, copy=False)
    return Episode(
        images=images,
        extras=episode_extras,
        actions=actions.astype(np.float32, copy=False),
        rewards=rewards.astype(np.float32, copy=False),
        terminated=bool(arrays["terminated"]),
        truncated=bool(arrays["truncated"]),
        tripped=str(arrays["tripped"]) if "tripped" in arrays else "",  # files before trips were kept lack it
        robot=str(arrays["robot"]) if "robot" in arrays else "",
        robot_episode=int(arrays["robot_episode"]) if "robot_episode" in arrays else -1,
        period_error_p99_ms=float(arrays["period_error_p99_ms"]) if "overruns" in arrays else math.nan,
        overruns=int(arrays["overruns"]) if "overruns" in arrays else -1,
    )


class EpisodeWriter:
    """Collects the steps of one episode at a time and writes each finished episode to disk.

    What an actor process uses on its own; `SequenceReplay` uses one to record what it stores.
    directory: where episode files go (created if missing).
    image_shape, action_dim, extras: as in SequenceReplay.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        action_dim: int,
        image_shape: tuple[int, int, int] = (64, 64, 3),
        extras: Mapping[str, int] | None = None,
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.image_shape = tuple(int(n) for n in image_shape)
        self.action_dim = int(action_dim)
        self.extras = dict(extras or {})
        self._images: list[np.ndarray] | None = None
        self._extras: dict[str, list[np.ndarray]] = {}
        self._actions: list[np.ndarray] = []
        self._rewards: list[float] = []

    @property
    def in_episode(self) -> bool:
        """Whether an episode has been started and not yet ended."""
        return self._images is not None

    def start_episode(self, first_obs: Mapping[str, np.ndarray]) -> None:
        """Starts an episode from its first observation (a dict with 'image' and the extras)."""
        if self.in_episode and self._actions:
            raise RuntimeError(
                "an episode is still open: end it with terminated or truncated on its last add(), "
                "or drop it with discard_episode()"
            )
        self._images = []
        self._extras = {name: [] for name in self.extras}
        self._actions, self._rewards = [], []
        self._append_obs(first_obs)

    def add(
        self,
        action: np.ndarray,
        reward: float,
        next_obs: Mapping[str, np.ndarray],
        terminated: bool,
        truncated: bool,
    ) -> tuple[Path, Episode] | None:
        """Records one step. When it ends the episode (terminated or truncated), writes the
        episode file and returns (its path, the episode); otherwise returns None."""
        if not self.in_episode:
            raise RuntimeError("call start_episode(first_obs) before add()")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (self.action_dim,):
            raise ValueError(f"action has shape {action.shape}, the replay expects ({self.action_dim},): pass action_dim={action.shape[-1] if action.ndim else 1} or fix the action")
        self._append_obs(next_obs)
        self._actions.append(action.copy())
        self._rewards.append(float(reward))
        if not (terminated or truncated):
            return None
        return self._finish(bool(terminated), bool(truncated) and not terminated, "")

    def end_tripped(self, fault_kind: str) -> tuple[Path, Episode] | None:
        """Ends the open episode at its last recorded step because a safety trip cut it short:
        written as truncated, marked with the fault's kind. Returns (path, episode), or None
        when it had no whole step (then nothing is written)."""
        if not self.in_episode or not self._actions:
            self.discard_episode()
            return None
        return self._finish(False, True, str(fault_kind))

    def _finish(self, terminated: bool, truncated: bool, tripped: str) -> tuple[Path, Episode]:
        episode = Episode(
            images=np.stack(self._images),
            extras={name: np.stack(rows) for name, rows in self._extras.items()},
            actions=np.stack(self._actions),
            rewards=np.asarray(self._rewards, dtype=np.float32),
            terminated=terminated,
            truncated=truncated,
            tripped=tripped,
        )
        self.discard_episode()
        return self._write(episode), episode

    def _write(self, episode: Episode) -> Path | None:
        return write_episode(self.directory, self._file_index(episode), episode)

    def _file_index(self, episode: Episode) -> int:
        # looked up at each write, as other writers may share the directory
        return _next_free_index(self.directory)

    def discard_episode(self) -> None:
        """Drops the open episode (nothing of it is written)."""
        self._images = None
        self._extras = {}
        self._actions, self._rewards = [], []

    def _append_obs(self, obs: Mapping[str, np.ndarray]) -> None:
        image = np.asarray(obs["image"])
        if image.shape != self.image_shape or image.dtype != np.uint8:
            raise ValueError(
                f"observation 'image' is {image.shape} {image.dtype}, the replay expects "
                f"{self.image_shape} uint8: pass image_shape={image.shape} or fix the camera size"
            )
        self._images.append(image.copy())  # the env may reuse its buffer
        for name, dim in self.extras.items():
            if name not in obs:
                raise KeyError(f"observation has no {name!r} (it has {sorted(obs)}): remove {name!r} from the replay's extras or add it to the observation")
            value = np.asarray(obs[name], dtype=np.float32)
            if value.shape != (dim,):
                raise ValueError(f"observation {name!r} has shape {value.shape}, the replay expects ({dim},): pass extras={{{name!r}: {value.size}}}")
            self._extras[name].append(value.copy())


class BackgroundEpisodeWriter(EpisodeWriter):
    """An EpisodeWriter whose finished episodes a thread writes, so that a control loop never
    waits for the disk (compression and fsync take ~15 ms, far more when another process fsyncs
    a checkpoint at the same moment). `add` returns (None, episode) for a finished episode.

    `flush()` waits until every finished episode is on disk and re-raises a failed write;
    `close()` flushes and ends the thread. A process killed hard loses what was still queued:
    the episode finished in the last few tens of milliseconds."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._queue: "queue.Queue[Episode | None]" = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="episode-writer", daemon=True)
        self._thread.start()

    def _write(self, episode: Episode) -> None:
        if self._error is not None:
            raise RuntimeError(f"an earlier episode could not be written to {self.directory}") from self._error
        self._queue.put(episode)
        return None

    def _drain(self) -> None:
        while (episode := self._queue.get()) is not None:
            try:
                super()._write(episode)
            except BaseException as error:  # reported by the next add() or flush()
                self._error = error
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def flush(self) -> None:
        """Waits until every finished episode is written; raises if one could not be."""
        self._queue.join()
        if self._error is not None:
            raise RuntimeError(f"an episode could not be written to {self.directory}") from self._error

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.flush()


@dataclass(frozen=True)
class _WindowIndex:
    """Per stored episode (oldest first): ring offsets and cumulative window counts."""

    frame_start: np.ndarray
    step_start: np.ndarray
    window_start: np.ndarray  # index of the episode's first window among all windows
    windows: int


class SequenceReplay:
    """Stores whole episodes once and samples fixed-length windows of them (see module docstring).

    directory: the replay's folder; episode files already there are loaded (the newest that
        fit, in order): that is how a run resumes.
    action_dim: A, the action's size.
    capacity_steps: transitions kept in memory (older whole episodes are evicted; files stay).
    sequence_length: L, steps per window (L+1 observations).
    image_shape: (H, W, 3) of the uint8 images.
    extras: per-observation float vectors to store beside the image, name -> size, e.g.
        {"goal": 2}; sampled under the same name.
    pad_start: whether windows may start before an episode's first observation (padded).
    expected_episode_steps: sizes the frames ring's room for each episode's extra first frame.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        action_dim: int,
        capacity_steps: int = 100_000,
        sequence_length: int = 8,
        image_shape: tuple[int, int, int] = (64, 64, 3),
        extras: Mapping[str, int] | None = None,
        pad_start: bool = True,
        expected_episode_steps: int = 40,
    ):
        for key, value in (
            ("capacity_steps", capacity_steps),
            ("sequence_length", sequence_length),
            ("action_dim", action_dim),
            ("expected_episode_steps", expected_episode_steps),
        ):
            require_int(f"replay.{key}", value)
        extras = dict(extras or {})
        reserved = {"images", "actions", "rewards", "terminated", "valid"} & set(extras)
        if reserved:
            raise ValueError(f"extras {sorted(reserved)} clash with the names of sampled arrays; rename them")
        self.writer = EpisodeWriter(directory, action_dim, image_shape, extras)
        self.directory = self.writer.directory
        self.image_shape = self.writer.image_shape
        self.action_dim = action_dim
        self.extras = extras
        self.sequence_length = sequence_length
        self.pad_start = pad_start
        self.capacity_steps = capacity_steps
        self.capacity_frames = capacity_steps + math.ceil(capacity_steps / expected_episode_steps)

        self._frames = np.zeros((self.capacity_frames, *self.image_shape), dtype=np.uint8)
        self._extras = {name: np.zeros((self.capacity_frames, dim), np.float32) for name, dim in extras.items()}
        self._actions = np.zeros((capacity_steps, action_dim), dtype=np.float32)
        self._rewards = np.zeros(capacity_steps, dtype=np.float32)
        self._terminated = np.zeros(capacity_steps, dtype=bool)
        # Stored episodes, oldest first: (frame ring offset, step ring offset, steps).
        self._episodes: deque[tuple[int, int, int]] = deque()
        self._frame_head = 0  # where the next episode's first frame goes
        self._step_head = 0
        self._frames_used = 0
        self._steps_used = 0
        self._index: _WindowIndex | None = None
        files = _list_episode_files(self.directory)
        self._known_files = {name for _, _, name in files}
        # episodes and steps in the directory, in memory or not (counted from the file names)
        self.total_episodes = len(files)
        self.total_steps = sum(file_steps for _, file_steps, _ in files)
        newest, steps, frames = [], 0, 0
        for _, file_steps, name in reversed(files):
            steps, frames = steps + file_steps, frames + file_steps + 1
            if steps > self.capacity_steps or frames > self.capacity_frames:
                break
            newest.append(name)
        for name in reversed(newest):
            self._load_file(name)

    # -- recording ---------------------------------------------------------------------------

    def start_episode(self, first_obs: Mapping[str, np.ndarray]) -> None:
        """Starts an episode from its first observation (a dict with 'image' and the extras)."""
        self.writer.start_episode(first_obs)

    def add(
        self,
        action: np.ndarray,
        reward: float,
        next_obs: Mapping[str, np.ndarray],
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Records one step; an episode that ends here is written to disk and becomes sampleable."""
        self._keep(self.writer.add(action, reward, next_obs, terminated, truncated))

    def end_tripped(self, fault_kind: str) -> bool:
        """Keeps the open episode up to its last whole step, truncated and marked with the trip's
        fault kind (EpisodeWriter.end_tripped); returns whether there was a step to keep."""
        finished = self.writer.end_tripped(fault_kind)
        self._keep(finished)
        return finished is not None

    def _keep(self, finished: tuple[Path, Episode] | None) -> None:
        if finished is not None:
            path, episode = finished
            self._known_files.add(path.name)
            self.total_episodes += 1
            self.total_steps += episode.steps
            self._store(episode, path)

    def discard_episode(self) -> None:
        """Drops the open episode (nothing of it is written)."""
        self.writer.discard_episode()

    def refresh(self) -> int:
        """Loads the episode files that appeared in the directory since the last look (written
        by another process); returns how many were found."""
        new = [(index, steps, name) for index, steps, name in _list_episode_files(self.directory) if name not in self._known_files]
        for _, steps, name in new:
            self._known_files.add(name)
            self.total_episodes += 1
            self.total_steps += steps
            self._load_file(name)
        return len(new)

    # -- sampling ----------------------------------------------------------------------------

    @property
    def num_episodes(self) -> int:
        """Episodes in memory."""
        return len(self._episodes)

    @property
    def num_steps(self) -> int:
        """Transitions in memory."""
        return self._steps_used

    @property
    def num_windows(self) -> int:
        """Distinct windows `sample` draws from."""
        return self._window_index().windows

    def __len__(self) -> int:
        return self._steps_used

    @property
    def memory_bytes(self) -> int:
        """Bytes of the preallocated in-memory arrays."""
        arrays = [self._frames, self._actions, self._rewards, self._terminated, *self._extras.values()]
        return sum(a.nbytes for a in arrays)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draws batch_size windows uniformly (with replacement).

        Returns: images (B, L+1, H, W, 3) uint8; actions (B, L, A) float32; rewards (B, L)
        float32; terminated (B, L) bool (true terminations only, never time limits); each
        extra (B, L+1, dim) float32; valid (B, L+1) bool (False on start padding)."""
        index = self._window_index()
        if index.windows == 0:
            raise ValueError(
                f"the replay holds no windows yet ({self.num_episodes} episodes, {self.num_steps} steps): "
                "add episodes first" + ("" if self.pad_start else f" of at least {self.sequence_length} steps")
            )
        return self.windows(rng.integers(index.windows, size=batch_size))

    def windows(self, window: np.ndarray) -> dict[str, np.ndarray]:
        """The windows numbered `window` (ints in [0, num_windows): the oldest stored episode's
        windows first, each episode's in time order), as `sample` returns them."""
        index = self._window_index()
        L = self.sequence_length
        episode = self.window_episodes(window)
        last_step = window - index.window_start[episode] + (0 if self.pad_start else L - 1)
        t = (last_step - (L - 1))[:, None] + np.arange(L + 1)  # observation index in the episode
        valid = t >= 0
        t = np.maximum(t, 0)  # padding repeats the first observation
        frame = (index.frame_start[episode][:, None] + t) % self.capacity_frames
        step = (index.step_start[episode][:, None] + t[:, :L]) % self.capacity_steps
        padding = ~valid[:, :L]
        actions = self._actions[step]
        actions[padding] = 0.0
        rewards = self._rewards[step]
        rewards[padding] = 0.0
        batch = {
            "images": self._frames[frame],
            "actions": actions,
            "rewards": rewards,
            "terminated": self._terminated[step] & ~padding,
            "valid": valid,
        }
        for name, values in self._extras.items():
            batch[name] = values[frame]
        return batch

    def window_episodes(self, window: np.ndarray) -> np.ndarray:
        """The stored episode (0: the oldest in memory) that each window numbered `window` is from."""
        return np.searchsorted(self._window_index().window_start, window, side="right") - 1

    # -- internals ---------------------------------------------------------------------------

    def _load_file(self, name: str) -> None:
        path = self.directory / name
        try:
            episode = read_episode(path, self.image_shape, self.action_dim, self.extras)
        except CorruptEpisodeError as error:
            self._set_aside(path, error)
            return
        self._store(episode, path)

    def _set_aside(self, path: Path, error: CorruptEpisodeError) -> None:
        """Moves an unreadable episode file to corrupt/ (never deletes it), with a warning."""
        self.total_episodes -= 1
        self.total_steps -= _parse_name(path.name)[1]
        corrupt = self.directory / CORRUPT_DIR
        corrupt.mkdir(exist_ok=True)
        try:
            os.replace(path, corrupt / path.name)
            _fsync_directory(self.directory)
            where = f"moved to {corrupt / path.name}"
        except OSError as move_error:
            where = f"left in place, moving it failed: {move_error}"
        warnings.warn(f"replay: skipped episode file {path} ({error}); {where}", stacklevel=3)

    def _store(self, episode: Episode, path: Path) -> None:
        """Copies a finished episode into the rings, evicting the oldest episodes to make room."""
        steps, frames = episode.steps, episode.steps + 1
        if steps > self.capacity_steps or frames > self.capacity_frames:
            raise ValueError(
                f"episode {path.name} has {steps} steps, more than the replay holds "
                f"(capacity_steps={self.capacity_steps}); raise capacity_steps (the file is kept on disk)"
            )
        while self._steps_used + steps > self.capacity_steps or self._frames_used + frames > self.capacity_frames:
            _, _, old_steps = self._episodes.popleft()
            self._steps_used -= old_steps
            self._frames_used -= old_steps + 1
        _ring_write(self._frames, self._frame_head, episode.images)
        for name, values in self._extras.items():
            _ring_write(values, self._frame_head, episode.extras[name])
        _ring_write(self._actions, self._step_head, episode.actions)
        _ring_write(self._rewards, self._step_head, episode.rewards)
        terminated = np.zeros(steps, dtype=bool)
        terminated[-1] = episode.terminated
        _ring_write(self._terminated, self._step_head, terminated)
        self._episodes.append((self._frame_head, self._step_head, steps))
        self._frame_head = (self._frame_head + frames) % self.capacity_frames
        self._step_head = (self._step_head + steps) % self.capacity_steps
        self._frames_used += frames
        self._steps_used += steps
        self._index = None

    def _window_index(self) -> _WindowIndex:
        if self._index is None:
            stored = np.array(self._episodes, dtype=np.int64).reshape(-1, 3)
            steps = stored[:, 2]
            windows = steps if self.pad_start else np.maximum(steps - self.sequence_length + 1, 0)
            ends = np.cumsum(windows)
            self._index = _WindowIndex(
                frame_start=stored[:, 0],
                step_start=stored[:, 1],
                window_start=ends - windows,
                windows=int(ends[-1]) if len(ends) else 0,
            )
        return self._index


def _ring_write(ring: np.ndarray, head: int, values: np.ndarray) -> None:
    """Writes values into ring from position head on, wrapping around its end."""
    first = min(len(values), len(ring) - head)
    ring[head : head + first] = values[:first]
    ring[: len(values) - first] = values[first:]
