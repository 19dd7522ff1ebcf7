"""Online SLAC training: collect, update, evaluate, checkpoint (the paper's Algorithm 1).

  1. collect `initial_collection_steps` with uniformly random actions;
  2. pre-train the latent model alone for `initial_model_updates` updates;
  3. then model + SAC updates, `updates_per_step` per environment step;
  every `eval_every_episodes` episodes evaluate the deterministic policy.

The `Trainer` runs the episodes (it is the actor). Where the updates happen:
  - inline (learner=None): after every step, in this process. Episodes always run to their end,
    checkpoints (every `checkpoint_every_episodes`, and when stopped by a signal or halted) fall on episode
    boundaries; a resumed run draws the same episodes as the uninterrupted one (the claw restarts
    from a fresh physical reset, so its weights then differ in their low bits).
  - in the learner process (learner=LearnerProcess, runtime/learner.py): the actor keeps the
    control rate, records finished episodes to the replay folder, and takes up the published
    policy between ticks; the learner checkpoints. Each episode is seeded by (seed, its index).
A trip of the safety layer ends the episode: what it had collected up to its last whole step is
recorded (truncated, marked with the fault's kind: on a robot every step costs real time), the
trip is counted (trips per 1,000 steps), and `TripPolicy` says what then.
An action the safety layer refused (not finite) is recorded, in the replay and the policy's
history, as the hold it became (the env's info["held_action"]).
"""

from __future__ import annotations

import csv
import math
import pathlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from slac_robot.agent.base import Agent
from slac_robot.agent.checkpoint import (
    CorruptCheckpoint,
    checkpoint_path,
    load_policy_file,
    prune_checkpoints,
    save_checkpoint,
    set_aside,
)
from slac_robot.agent.history import vector_dims
from slac_robot.agent.policy import make_history
from slac_robot.agent.probe import HeldoutProbe, heldout_probe
from slac_robot.agent.replay import EpisodeWriter, SequenceReplay
from slac_robot.runtime.media import write_model_media
from slac_robot.runtime.plots import plot_learning_curve
from slac_robot.runtime.stop import Interrupted, StopSignal
from slac_robot.runtime.video import VideoWriter
from slac_robot.safety import NEEDS_PERSON, Fault, ResetFailed, SafetyTrip
from slac_robot.storage import append_csv_row


@dataclass(frozen=True)
class Schedule:
    """How long and how often (counts, and the update-to-data ratio; see configs/train.yaml)."""

    total_env_steps: int
    initial_collection_steps: int
    initial_model_updates: int
    updates_per_step: float
    model_batch_size: int
    sac_batch_size: int
    eval_every_episodes: int
    eval_episodes: int
    checkpoint_every_episodes: int
    keep_checkpoints: int
    log_every_steps: int

    def updates_allowed(self, env_steps: int) -> int:
        """SAC updates due in all after env_steps recorded steps: updates_per_step per step from
        the last initial-collection step on, rounded down (0.5: one update every other step)."""
        steps = env_steps - self.initial_collection_steps + 1
        return math.floor(self.updates_per_step * steps + 1e-9) if steps > 0 else 0

    def updates_after_step(self, env_steps: int) -> int:
        """The updates due on reaching env_steps (updates_allowed's increment): 1 at every step for
        the paper's ratio 1; with a fraction, they depend on the step count alone, so a resume
        updates where the uninterrupted run would have."""
        return self.updates_allowed(env_steps) - self.updates_allowed(env_steps - 1)


# What a run writes, for the free-space check at its start (measured on backend=sim, 64x64):
EPISODE_BYTES_PER_FRAME = 2_000  # an episode file, per observation (40 steps: random actions 80 kB, a learnt policy 67 kB)
EVALUATION_MEDIA_BYTES = 250_000  # an evaluation's video and the model's sequences (mp4 and png: ~230 kB)


def space_needed(run_dir: pathlib.Path, schedule: Schedule, recorded_steps: int, episode_steps: int,
                 image_shape: tuple[int, ...], agent_state: dict[str, Any]) -> str | None:
    """A warning when the run's filesystem has less room than the rest of the run is expected to
    write, else None. The estimate: every episode file (training and evaluation), the checkpoints
    kept plus the one being written (weights and Adam's two moments: 3x the agent's tensors; a
    tiny agent's measured 2.9x), and each evaluation's videos. TensorBoard's files are left out."""
    import shutil

    remaining = max(schedule.total_env_steps - recorded_steps, 0)
    episodes = math.ceil(remaining / episode_steps)
    evaluations = episodes // schedule.eval_every_episodes if schedule.eval_every_episodes else 0
    pixels = image_shape[0] * image_shape[1] / (64 * 64)
    episode_bytes = EPISODE_BYTES_PER_FRAME * pixels * (episode_steps + 1)
    checkpoint_bytes = 3 * _tensor_bytes(agent_state)
    need = (episode_bytes * (episodes + evaluations * schedule.eval_episodes)
            + checkpoint_bytes * (schedule.keep_checkpoints + 1) + EVALUATION_MEDIA_BYTES * evaluations)
    free = shutil.disk_usage(run_dir).free
    if free >= need:
        return None
    return (f"{run_dir} is on a filesystem with {free / 1e6:.1f} MB free, and the rest of this run is expected "
            f"to need about {need / 1e6:.1f} MB ({episodes} episodes of ~{episode_bytes / 1e3:.0f} kB, "
            f"checkpoints of ~{checkpoint_bytes / 1e6:.1f} MB, {evaluations} evaluations); free space there, "
            "or lower schedule.total_env_steps")


def _tensor_bytes(state: Any) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_tensor_bytes(v) for v in state)
    return 0


@dataclass
class Progress:
    """Counters of a run, saved in every checkpoint."""

    env_steps: int = 0
    episodes: int = 0
    pretrained: bool = False
    trips: int = 0  # safety trips, at resets too (trips per 1,000 steps: 1000 trips / env_steps)


@dataclass
class EvalResult:
    """Evaluation of the deterministic policy, per goal (goal_rad rounded; "all" without goals)."""

    env_steps: int
    success_rate: dict[str, float] = field(default_factory=dict)
    final_error: dict[str, float] = field(default_factory=dict)
    mean_return: float = 0.0
    probe: dict[str, float] = field(default_factory=dict)  # agent.probe: what the features tell of the state


@dataclass(frozen=True)
class EvalEpisode:
    """One evaluation episode. goal: goal_rad rounded ("all" without goals); error_name: the
    task's error in info (task_error); start_error and final_error: its value after the reset
    and at the end (NaN where the task has none); trip: the fault's kind where a safety trip
    ended it, else ""; probe: the linear probe's errors over this episode's windows
    (agent/probe.py; empty where the learner probes in its own process)."""

    seed: int
    goal: str
    success: float
    error_name: str
    start_error: float
    final_error: float
    episode_return: float
    steps: int
    trip: str = ""
    probe: dict[str, float] = field(default_factory=dict)

    def row(self, env_steps: int) -> dict[str, Any]:
        """This episode's row of eval_episodes.csv."""
        return {"env_steps": env_steps, "seed": self.seed, "goal": self.goal,
                f"start_{self.error_name}": round(self.start_error, 4),
                f"final_{self.error_name}": round(self.final_error, 4),
                "success": int(self.success), "return": round(self.episode_return, 3),
                "steps": self.steps, "trip": self.trip,
                **{f"probe_{name.split('/', 1)[1]}": round(value, 4) for name, value in self.probe.items()}}


def task_error(info: dict[str, Any]) -> tuple[str, float]:
    """The task's error in an env info: ("error_rad", goal - valve wrapped to [-pi, pi): its sign
    is the way to turn) or ("distance", the dot's distance to its goal)."""
    for name in ("error_rad", "distance"):
        if name in info:
            return name, float(info[name])
    return "error", float("nan")


@dataclass(frozen=True)
class TripPolicy:
    """What the session does after the safety layer tripped (configs/train.yaml, session section).

    after_trip: "reset": the next episode's scripted reset goes on by itself; "wait_for_person":
        ask a person first. Faults in safety.NEEDS_PERSON (a motor error, overheating, a lost port
        or camera) always ask a person.
    max_trips_in_a_row: more trips than this without a finished episode between them ask a person.
    ask_person: shows a message and returns True when the person fixed the claw and wants to go
        on; None (no one at the terminal): the session halts instead of asking.
    """

    after_trip: str = "reset"
    max_trips_in_a_row: int = 3
    ask_person: Callable[[str], bool] | None = None


class SessionHalted(RuntimeError):
    """The session cannot go on by itself (a fault that needs a person, and none answered)."""


class UpdateScalars:
    """The updates' scalars between two TensorBoard writes: each one's newest value, and for the
    signals of a collapse (PEAKS) also its maximum over the interval, as `<name>_max`: a
    one-update spike falls between two writes of the newest value."""

    PEAKS = ("model/grad_norm", "model/reward_nll", "sac/critic_loss")

    def __init__(self):
        self.newest: dict[str, float] = {}
        self.peaks: dict[str, float] = {}

    def add(self, metrics: dict[str, float]) -> None:
        """Takes one update's metrics (name -> value)."""
        self.newest.update(metrics)
        for name in self.PEAKS:
            if name in metrics:
                self.peaks[name] = max(self.peaks.get(name, -math.inf), metrics[name])

    def take(self) -> dict[str, float]:
        """The scalars to write now (the newest values and the peaks); the peaks start over."""
        scalars = {**self.newest, **{f"{name}_max": value for name, value in self.peaks.items()}}
        self.peaks = {}
        return scalars


def _every(count: int, every: int) -> bool:
    return every > 0 and count % every == 0


BEST_POLICY_FILE = "best_policy.pt"


def best_evaluation(path: pathlib.Path) -> tuple[float, float] | None:
    """(success rate, mean return) stored in a best_policy.pt; None where there is none yet. A
    damaged file is moved to corrupt/ beside it (with a warning) and counts as none."""
    if not path.is_file():
        return None
    try:
        state = load_policy_file(path, "best policy file")
        return float(state["success_rate"]), float(state["mean_return"])
    except CorruptCheckpoint as error:
        reason = str(error)
    except KeyError as error:
        reason = f"best policy file {path} holds no {error} entry"
    set_aside(path, f"{reason}; the next evaluation writes a new one")
    return None


class Trainer:
    """Runs one training session into `run_dir`:

    replay/          finished episodes, one file each (slac_robot.agent.replay)
    eval_replay/     the evaluation episodes, kept apart: the probe's held-out data
    checkpoints/     checkpoint_<env steps>.pt, the newest `keep_checkpoints`
    best_policy.pt   the policy of the best evaluation so far (success rate, then mean return),
                     kept when a later policy collapses; `slac-robot eval run=... best=true`
    learning_curve.png   evaluation success rate and return against environment steps
    tensorboard/     scalars (losses, KL, alpha, entropy, Q, returns, success), model images
    videos/          evaluation episodes; the model's reconstructions and predictions
    train_episodes.csv, eval.csv   one row per training episode (with its error at the start and
                     the end) / evaluation
    eval_episodes.csv   one row per evaluation episode: its seed, goal, error at the start and
                     the end, success, return, the trip that ended it (which starts fail), and
                     the probe's errors over it (whether the agent saw the valve there)

    learner: None (updates inline) or a LearnerProcess (runtime/learner.py).
    trip_policy: what to do after a safety trip (TripPolicy). rate_keeper: the env's RateKeeper,
        when it keeps a real-time rate (its jitter is logged per episode). on_stop: called first
        when a stop signal ends the session, with the reason (cli.train passes env.make_safe:
        the robot is safe before the checkpoint is written).
    """

    def __init__(
        self,
        env: gym.Env,
        eval_env: gym.Env,
        agent: Agent,
        replay: SequenceReplay,
        schedule: Schedule,
        run_dir: pathlib.Path,
        seed: int,
        video_scale: int = 4,
        show_progress: bool = True,
        learner=None,
        trip_policy: TripPolicy | None = None,
        rate_keeper=None,
        on_stop: Callable[[str], object] | None = None,
    ):
        self.env, self.eval_env, self.agent, self.replay = env, eval_env, agent, replay
        self.learner = learner
        self.trip_policy = trip_policy or TripPolicy()
        self.rate_keeper = rate_keeper
        self.on_stop = on_stop
        self.seed = seed
        self.trips_in_a_row = 0
        self.policy_ready = learner is None
        self.schedule = schedule
        self.run_dir = pathlib.Path(run_dir)
        self.video_scale = video_scale
        self.show_progress = show_progress
        self.progress = Progress()
        self.rng = np.random.default_rng(seed)
        self.action_dim = env.action_space.shape[0]
        self.eval_writer = EpisodeWriter(self.run_dir / "eval_replay", self.action_dim,
                                         env.observation_space["image"].shape, vector_dims(env.observation_space))
        self.fps = env.metadata.get("render_fps", 10)
        self._writer = None
        self._scalars = UpdateScalars()
        self.last_eval: EvalResult | None = None
        # (success rate, mean return) of best_policy.pt: the file is the record, so that a resumed
        # run, whose checkpoint may be older than the file, never replaces it with a worse policy.
        self.best_eval = best_evaluation(self.run_dir / BEST_POLICY_FILE)
        self._purge_step: int | None = 0

    # ----- persistence -----
    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent.state_dict(),
            "progress": asdict(self.progress),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])
        self.progress = Progress(**state["progress"])
        self._purge_step = self.progress.env_steps
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def save(self) -> pathlib.Path | None:
        """Inline: writes a checkpoint. With a learner process it checkpoints itself and the
        actor's progress is the replay folder, so there is nothing to write."""
        if self.learner is not None:
            return None
        path = checkpoint_path(self.run_dir / "checkpoints", self.progress.env_steps)
        save_checkpoint(path, self.state_dict())
        prune_checkpoints(self.run_dir / "checkpoints", self.schedule.keep_checkpoints)
        return path

    # ----- the loop -----
    def train(self, stop: StopSignal | None = None) -> None:
        """Runs episodes until schedule.total_env_steps; a requested stop raises Interrupted,
        a halted session SessionHalted, a failed reset ResetFailed, each after a checkpoint (the
        unfinished episode is not kept)."""
        s = self.schedule
        # Opened before the first tick: importing TensorBoard and creating its file take ~0.1 s,
        # which inside the control loop would be an overrun at the end of the first episode.
        _ = self.writer
        bar = tqdm(
            total=s.total_env_steps, initial=self.progress.env_steps, unit="step", desc="train",
            disable=not self.show_progress,
        )
        finished = False
        try:
            while self.progress.env_steps < s.total_env_steps:
                recorded_before = self.progress.episodes
                try:
                    self._run_episode(bar, stop)
                    self.trips_in_a_row = 0
                except SafetyTrip as trip:
                    self._after_trip(trip.fault)
                if self.progress.episodes == recorded_before:
                    continue  # a trip before the episode's first whole step: nothing was recorded
                if _every(self.progress.episodes, s.eval_every_episodes):
                    self.evaluate()
                if _every(self.progress.episodes, s.checkpoint_every_episodes):
                    self.save()
            self.save()
            finished = True
        except Interrupted as interrupt:
            if self.on_stop is not None:
                self.on_stop(f"stopped by {interrupt.signal_name}")  # the robot first, then the checkpoint
            self.save()
            raise
        except (SessionHalted, ResetFailed):
            # A stop, or a session that cannot go on by itself: the unfinished episode was dropped,
            # so this is an episode boundary; keep what was learnt since the last checkpoint.
            self.save()
            raise
        finally:
            bar.close()
            self._close_writer(quietly=not finished)

    def _after_trip(self, fault: Fault) -> None:
        """The episode ended in a trip (the robot is safe, the event logged): go on, ask, or halt."""
        self.trips_in_a_row += 1
        policy = self.trip_policy
        reason = None
        if fault.kind in NEEDS_PERSON:
            reason = f"{fault.kind} needs a person"
        elif policy.after_trip == "wait_for_person":
            reason = "session.after_trip=wait_for_person"
        elif self.trips_in_a_row > policy.max_trips_in_a_row:
            reason = f"{self.trips_in_a_row} trips in a row (session.max_trips_in_a_row={policy.max_trips_in_a_row})"
        if reason is None:
            return
        message = f"safety trip: {fault.message} ({reason})"
        if policy.ask_person is None or not policy.ask_person(message):
            raise SessionHalted(message)
        self.trips_in_a_row = 0
        if self.rate_keeper is not None:
            self.rate_keeper.restart()  # the wait was meant; it is neither jitter nor an overrun

    def _take_up_policy(self) -> None:
        """Between two ticks: newly published weights, if any; a dead learner ends the session."""
        self.learner.check_alive()
        state = self.learner.poll_policy()
        if state is not None:
            self.agent.load_policy_state_dict(state)
            self.policy_ready = True

    def _run_episode(self, bar: tqdm, stop: StopSignal | None) -> None:
        s, p = self.schedule, self.progress
        if self.learner is not None:
            # Seeded by its index: a resumed session does not repeat the first episodes' draws.
            self.rng = np.random.default_rng((self.seed, p.episodes))
        try:
            obs, start_info = self.env.reset(seed=int(self.rng.integers(2**31)))
        except SafetyTrip:  # at the end of the reset (the robot is safe, the trip logged)
            p.trips += 1
            self._log_trips()
            raise
        self.replay.start_episode(obs)
        history = make_history(self.agent, self.env.observation_space)
        history.reset(obs)
        episode_return, done, info, steps = 0.0, False, {}, 0
        try:
            while not done:
                if stop is not None:
                    stop.check()
                if self.learner is not None:
                    self._take_up_policy()
                # Act: random while collecting the initial data (and until the learner published
                # a policy), then the policy (sampled).
                if p.env_steps < s.initial_collection_steps or not self.policy_ready:
                    action = self.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
                else:
                    action = self.agent.act(history, explore=True)
                obs, reward, terminated, truncated, info = self.env.step(action)
                done = terminated or truncated
                action = info.get("held_action", action)  # a refused (NaN) action: the hold it became
                self.replay.add(action, reward, obs, terminated, truncated)
                history.push(action, obs)
                episode_return += float(reward)
                p.env_steps += 1
                steps += 1
                bar.update(1)
                # Update: model pre-training once, then model + SAC after every step (from the
                # first finished episode on: only finished episodes are in the replay).
                if self.learner is None and p.env_steps >= s.initial_collection_steps and self.replay.num_episodes > 0:
                    if not p.pretrained:
                        self._pretrain_model(stop)
                    for _ in range(s.updates_after_step(p.env_steps)):
                        self._update()
                if _every(p.env_steps, s.log_every_steps):
                    self._log_scalars()
        except SafetyTrip as trip:
            # The robot is safe and the trip logged. The steps so far are experience like any
            # other: kept, truncated (the trip is no end of the task), marked with the fault.
            p.trips += 1
            if self.replay.end_tripped(trip.fault.kind):
                self._finish_episode(episode_return, False, trip.fault.kind, start_info, info)
            else:
                self._log_trips()
            raise
        except BaseException:
            # The unfinished episode is not recorded, so its steps do not count either.
            self.replay.discard_episode()
            p.env_steps -= steps
            raise
        self._finish_episode(episode_return, bool(info.get("success", False)), "", start_info, info)

    def _finish_episode(self, episode_return: float, success: bool, tripped: str, start_info: dict[str, Any],
                        last_info: dict[str, Any]) -> None:
        """Counts a recorded episode and logs it: a train_episodes.csv row (with the task's error
        after the reset and at the last whole step: which starts the exploring policy solves),
        TensorBoard scalars."""
        p = self.progress
        p.episodes += 1
        error_name, start_error = task_error(start_info)
        self._write_row("train_episodes.csv", {
            "episode": p.episodes, "env_steps": p.env_steps, "return": episode_return,
            "success": success, f"start_{error_name}": round(start_error, 4),
            f"final_{error_name}": round(task_error(last_info)[1], 4), "policy_sac_updates": self.agent.sac_updates,
            "tripped": tripped, "trips_per_1000_steps": round(self._trips_per_1000_steps(), 3),
        })
        self.writer.add_scalar("train/episode_return", episode_return, p.env_steps)
        self.writer.add_scalar("train/success", float(success), p.env_steps)
        self._log_trips()
        if self.rate_keeper is not None:
            jitter = self.rate_keeper.jitter()
            self.writer.add_scalar("actor/period_error_p99_ms", jitter.p99_ms, p.env_steps)
            self.writer.add_scalar("actor/overruns", jitter.overruns, p.env_steps)

    def _trips_per_1000_steps(self) -> float:
        return 1000.0 * self.progress.trips / max(self.progress.env_steps, 1)

    def _log_trips(self) -> None:
        self.writer.add_scalar("train/trips_per_1000_steps", self._trips_per_1000_steps(), self.progress.env_steps)

    def _pretrain_model(self, stop: StopSignal | None) -> None:
        """The paper's model-only pre-training on the initial random data (a stop request is
        honoured between two updates; the pre-training then starts over on resume)."""
        updates = self.schedule.initial_model_updates if self.agent.has_latent_model else 0
        for _ in tqdm(range(updates), desc="pre-train model", unit="update",
                      disable=not self.show_progress, leave=False):
            if stop is not None:
                stop.check()
            self._scalars.add(self.agent.pretrain_step(self.replay, self.rng, self.schedule.model_batch_size))
        self.progress.pretrained = True

    def _update(self) -> None:
        s = self.schedule
        self._scalars.add(self.agent.train_step(self.replay, self.rng, s.model_batch_size, s.sac_batch_size))

    def _log_scalars(self) -> None:
        for name, value in self._scalars.take().items():
            self.writer.add_scalar(name, value, self.progress.env_steps)

    @property
    def writer(self):
        """The TensorBoard writer, opened on first use. The first opening purges events logged
        after this trainer's starting step: a resumed run drops what the crashed run wrote after
        its checkpoint, as the uninterrupted run would not have written it."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self._purge_step)
            self._purge_step = None
        return self._writer

    def _close_writer(self, quietly: bool = False) -> None:
        """Closes TensorBoard's writer; quietly: a failure to flush it (a full disk) does not hide
        the exception that is ending the session."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except Exception:
            if not quietly:
                raise

    # ----- evaluation -----
    def evaluate(self) -> EvalResult:
        """Runs schedule.eval_episodes with the deterministic policy on the evaluation env;
        logs success rate and final |error| per goal; writes a video of the first episode and the
        model's reconstructions and predictions."""
        p = self.progress
        successes: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, list[float]] = defaultdict(list)
        returns, eval_steps, episodes = [], 0, []
        video_dir = self.run_dir / "videos"
        video_dir.mkdir(parents=True, exist_ok=True)
        options = self.eval_env.unwrapped.evaluation_options(self.schedule.eval_episodes)
        for seed in range(self.schedule.eval_episodes):
            video = None
            if seed == 0:
                video = VideoWriter(video_dir / f"eval_{p.env_steps:09d}.mp4", self.fps, self.video_scale)
            try:
                episode = self._eval_episode(seed, options[seed], video)
            finally:
                if video is not None:
                    video.close()
            successes[episode.goal].append(episode.success)
            errors[episode.goal].append(abs(episode.final_error))
            returns.append(episode.episode_return)
            eval_steps += episode.steps
            episodes.append(episode)
        probe = self._probe(eval_steps)
        recorded = [i for i, episode in enumerate(episodes) if episode.steps > 0]  # the held-out episodes
        if len(probe.per_episode) == len(recorded):
            for i, episode_errors in zip(recorded, probe.per_episode):
                episodes[i] = replace(episodes[i], probe=episode_errors)
        result = EvalResult(
            env_steps=p.env_steps,
            success_rate={g: float(np.mean(v)) for g, v in successes.items()},
            final_error={g: float(np.mean(v)) for g, v in errors.items()},
            mean_return=float(np.mean(returns)),
            probe=probe.errors,
        )
        overall = float(np.mean([x for v in successes.values() for x in v]))
        self.writer.add_scalar("eval/success_rate", overall, p.env_steps)
        self.writer.add_scalar("eval/mean_return", result.mean_return, p.env_steps)
        for goal in result.success_rate:
            self.writer.add_scalar(f"eval/success_rate/goal_{goal}", result.success_rate[goal], p.env_steps)
            self.writer.add_scalar(f"eval/final_error/goal_{goal}", result.final_error[goal], p.env_steps)
        for name, value in result.probe.items():
            self.writer.add_scalar(name, value, p.env_steps)
        self._write_row("eval.csv", {
            "env_steps": p.env_steps, "episodes": p.episodes, "success_rate": overall,
            "mean_return": result.mean_return,
            # goal:success rate/mean final |error|/episodes, per goal (read by plots.read_per_goal)
            "per_goal": ";".join(f"{g}:{result.success_rate[g]:.3f}/{result.final_error[g]:.3f}/{len(successes[g])}"
                                 for g in sorted(result.success_rate)),
            **{name.split("/", 1)[1]: round(value, 4) for name, value in result.probe.items()},
        })
        for episode in episodes:  # written with eval.csv's row: an interrupted evaluation leaves neither
            self._write_row("eval_episodes.csv", episode.row(p.env_steps))
        self._plot_learning_curve()
        self._keep_if_best(overall, result.mean_return)
        self.last_eval = result
        if self.learner is None and self.replay.num_episodes and self.agent.has_latent_model:
            write_model_media(self.agent, self.replay.sample(1, np.random.default_rng(p.env_steps)),
                              video_dir / f"model_{p.env_steps:09d}", self.writer, p.env_steps, self.fps)
        return result

    def _keep_if_best(self, success_rate: float, mean_return: float) -> None:
        """Writes the policy to <run>/best_policy.pt (as the learner publishes policy.pt, with its
        evaluation's figures) when this evaluation beats the best so far: a higher success rate,
        or the same and a higher mean return. A policy that learnt and then collapsed (an
        unlucky model update can do that) is still there to run on the robot."""
        if self.best_eval is not None and (success_rate, mean_return) <= self.best_eval:
            return
        save_checkpoint(self.run_dir / BEST_POLICY_FILE, {
            "policy": self.agent.policy_state_dict(), "env_steps": self.progress.env_steps,
            "success_rate": success_rate, "mean_return": mean_return,
        })
        self.best_eval = (success_rate, mean_return)

    def _probe(self, heldout_steps: int) -> HeldoutProbe:
        """The linear probe of the agent's features (agent/probe.py): fitted on the replay,
        scored on this evaluation's episodes. Where the learner trains in its own process, the
        agent here has only the policy's weights: the learner probes at its checkpoints."""
        if self.learner is not None:
            return HeldoutProbe()
        return heldout_probe(self.agent, self.replay, self.run_dir / "eval_replay", heldout_steps,
                             np.random.default_rng(self.progress.env_steps))

    def _eval_episode(self, seed: int, options: dict, video: VideoWriter | None) -> EvalEpisode:
        """One episode of the deterministic policy, recorded in eval_replay/."""
        try:
            return self._run_eval_episode(seed, options, video)
        except BaseException:
            self.eval_writer.discard_episode()
            raise

    def _run_eval_episode(self, seed: int, options: dict, video: VideoWriter | None) -> EvalEpisode:
        # Evaluation episodes are seeded by their index and given their goal (evaluation_options):
        # the same goals and starts every time.
        episode_return, steps, info, start_info, trip = 0.0, 0, {}, {}, ""
        try:
            obs, info = self.eval_env.reset(seed=seed, options=options)
            start_info = info
            self.eval_writer.start_episode(obs)
            history = make_history(self.agent, self.eval_env.observation_space)
            history.reset(obs)
            if video is not None:
                video.append(obs["image"])
            done = False
            while not done:
                action = self.agent.act(history, explore=False)
                obs, reward, terminated, truncated, info = self.eval_env.step(action)
                done = terminated or truncated
                action = info.get("held_action", action)
                history.push(action, obs)
                self.eval_writer.add(action, reward, obs, terminated, truncated)
                episode_return += float(reward)
                steps += 1
                if video is not None:
                    video.append(obs["image"])
            success = float(bool(info.get("success", False)))
        except SafetyTrip as tripped:
            # The robot is safe and the trip logged: the episode failed; what it saw is kept (the
            # probe's data), the trip counted, and the session goes on, asks or halts as in training.
            self.progress.trips += 1
            self.eval_writer.end_tripped(tripped.fault.kind)
            self._after_trip(tripped.fault)
            success, trip = 0.0, tripped.fault.kind
        goal_rad = info.get("goal_rad", getattr(self.eval_env.unwrapped, "goal_rad", None))
        error_name, final_error = task_error(info)
        return EvalEpisode(
            seed=seed, goal="all" if goal_rad is None else f"{goal_rad:+.2f}", success=success,
            error_name=error_name, start_error=task_error(start_info)[1], final_error=final_error,
            episode_return=episode_return, steps=steps, trip=trip)

    def _plot_learning_curve(self) -> None:
        with open(self.run_dir / "eval.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        plot_learning_curve(
            [int(r["env_steps"]) for r in rows], [float(r["success_rate"]) for r in rows],
            [float(r["mean_return"]) for r in rows], self.run_dir / "learning_curve.png",
        )

    def _write_row(self, name: str, row: dict[str, Any]) -> None:
        append_csv_row(self.run_dir / name, row)
