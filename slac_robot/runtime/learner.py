"""The learner of a session: SLAC updates in their own process, fed by the replay on disk.

The actor (the process that owns the robot) writes each finished episode to <run>/replay. The
learner refreshes its replay from that folder, pre-trains the latent model once the initial data
is in, then runs model + SAC updates, never more than `updates_per_step` per recorded
environment step, and publishes the policy's weights to <run>/policy.pt (replaced atomically),
which the actor takes up between two control ticks. Neither waits for the other: the actor never
blocks on the learner, and a learner that is ahead sleeps until more episodes arrive.

The learner checkpoints the agent (networks, optimisers, temperature, counters, RNG states) to
<run>/checkpoints; a resumed session loads the newest readable one and refreshes the replay from
disk, so a crash of either process costs at most the episode in progress.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
import traceback
from typing import Any, Callable

import numpy as np
import torch

from slac_robot.agent.base import Agent
from slac_robot.agent.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    load_latest_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from slac_robot.agent.probe import heldout_probe
from slac_robot.agent.replay import SequenceReplay
from slac_robot.runtime.media import write_model_media
from slac_robot.runtime.train import Schedule

POLICY_FILE = "policy.pt"


def publish_policy(run_dir: pathlib.Path, agent: Agent, env_steps: int) -> None:
    """Writes the policy's weights where the actor looks for them (atomically: it never reads half)."""
    save_checkpoint(pathlib.Path(run_dir) / POLICY_FILE, {"policy": agent.policy_state_dict(), "env_steps": env_steps})


class PolicySubscriber:
    """The actor's side of publish_policy: `poll()` returns newly published weights, else None.

    A poll is one stat() of the file; it loads only when the file was replaced since the last poll."""

    def __init__(self, run_dir: pathlib.Path):
        self.path = pathlib.Path(run_dir) / POLICY_FILE
        self._seen: tuple[int, int] | None = None
        self.version = 0

    def poll(self) -> dict[str, Any] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns)
        if key == self._seen:
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        self._seen = key
        self.version += 1
        return state["policy"]


class Learner:
    """SLAC updates from a replay folder that another process fills.

    agent, replay: the learner's own (the replay opened on <run>/replay).
    schedule: initial_collection_steps, initial_model_updates, updates_per_step, batch sizes,
        keep_checkpoints, as in `slac-robot train`'s schedule section.
    publish_every_updates: publish the policy after this many SAC updates.
    checkpoint_every_updates: write a checkpoint after this many SAC updates (and when stopping).
    log_every_updates: TensorBoard scalars every this many SAC updates.
    heldout_steps: steps of the newest evaluation episodes (<run>/eval_replay, written by the
        actor) that the probe scores at each checkpoint (agent/probe.py); 0: no probe.
    """

    def __init__(
        self,
        agent: Agent,
        replay: SequenceReplay,
        schedule: Schedule,
        run_dir: pathlib.Path,
        seed: int,
        publish_every_updates: int,
        checkpoint_every_updates: int,
        log_every_updates: int,
        fps: float,
        heldout_steps: int = 0,
    ):
        self.agent, self.replay, self.schedule = agent, replay, schedule
        self.run_dir = pathlib.Path(run_dir)
        self.rng = np.random.default_rng(seed)
        self.publish_every_updates = publish_every_updates
        self.checkpoint_every_updates = checkpoint_every_updates
        self.log_every_updates = log_every_updates
        self.fps = fps
        self.heldout_steps = heldout_steps
        self.pretrained = False
        self._writer = None
        self._metrics: dict[str, float] = {}
        self._rate_mark = (time.monotonic(), 0)

    # ----- the loop -----
    def run(self, should_stop: Callable[[], bool], poll_s: float) -> None:
        """Updates until should_stop(); then a last checkpoint and publication."""
        try:
            while not should_stop():
                self.replay.refresh()
                due = self.updates_due()
                if due <= 0:
                    time.sleep(poll_s)
                    continue
                if not self.pretrained:
                    self.pretrain(should_stop)
                    continue
                for _ in range(min(due, self.publish_every_updates)):
                    if should_stop():  # a CPU update takes seconds: look between each
                        break
                    self.update()
                    if self.agent.sac_updates % self.log_every_updates == 0:
                        self._log()
                    if self.agent.sac_updates % self.checkpoint_every_updates == 0:
                        self.save()
                publish_policy(self.run_dir, self.agent, self.replay.total_steps)
        finally:
            if self.replay.num_episodes:
                self.save()
                publish_policy(self.run_dir, self.agent, self.replay.total_steps)
            if self._writer is not None:
                self._writer.close()

    def updates_due(self) -> int:
        """How many SAC updates the recorded data allows now (pre-training counts as one chunk)."""
        s = self.schedule
        if self.replay.num_episodes == 0 or self.replay.total_steps < s.initial_collection_steps:
            return 0
        if not self.pretrained:
            return 1
        allowed = s.updates_per_step * (self.replay.total_steps - s.initial_collection_steps + 1)
        return allowed - self.agent.sac_updates

    def pretrain(self, should_stop: Callable[[], bool]) -> None:
        """The paper's model-only pre-training on the initial data (a stop is honoured between
        updates; the pre-training then starts over on resume)."""
        updates = self.schedule.initial_model_updates if self.agent.has_latent_model else 0
        for _ in range(updates):
            if should_stop():
                return
            self._metrics.update(self.agent.pretrain_step(self.replay, self.rng, self.schedule.model_batch_size))
        self.pretrained = True
        publish_policy(self.run_dir, self.agent, self.replay.total_steps)

    def update(self) -> None:
        s = self.schedule
        self._metrics.update(self.agent.train_step(self.replay, self.rng, s.model_batch_size, s.sac_batch_size))

    # ----- logging -----
    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard" / "learner"))
        return self._writer

    def _log(self) -> None:
        step = self.replay.total_steps
        for name, value in self._metrics.items():
            self.writer.add_scalar(name, value, step)
        now, updates = time.monotonic(), self.agent.sac_updates
        then, before = self._rate_mark
        self.writer.add_scalar("learner/sac_updates", updates, step)
        self.writer.add_scalar("learner/updates_per_s", (updates - before) / max(now - then, 1e-9), step)
        self.writer.add_scalar("learner/updates_behind", self.updates_due(), step)
        self._rate_mark = (now, updates)

    # ----- persistence -----
    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent.state_dict(),
            "pretrained": self.pretrained,
            "env_steps": self.replay.total_steps,
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])
        self.pretrained = bool(state["pretrained"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def save(self) -> pathlib.Path:
        """A checkpoint named by the recorded environment steps; the model's image rows beside it."""
        path = checkpoint_path(self.run_dir / "checkpoints", self.replay.total_steps)
        save_checkpoint(path, self.state_dict())
        prune_checkpoints(self.run_dir / "checkpoints", self.schedule.keep_checkpoints)
        self._probe()
        if not self.agent.has_latent_model:
            return path
        videos = self.run_dir / "videos"
        videos.mkdir(exist_ok=True)
        write_model_media(self.agent, self.replay.sample(1, np.random.default_rng(self.replay.total_steps)),
                          videos / f"model_{self.replay.total_steps:09d}", self.writer,
                          self.replay.total_steps, self.fps)
        return path

    def _probe(self) -> None:
        """The linear probe on the newest evaluation episodes: TensorBoard and <run>/probe.csv."""
        steps = self.replay.total_steps
        if not (self.run_dir / "eval_replay").is_dir():
            return
        errors = heldout_probe(self.agent, self.replay, self.run_dir / "eval_replay", self.heldout_steps,
                               np.random.default_rng(steps))
        for name, value in errors.items():
            self.writer.add_scalar(name, value, steps)
        if errors:
            path = self.run_dir / "probe.csv"
            new = not path.exists()
            with open(path, "a") as f:
                if new:
                    f.write(",".join(["env_steps", *(n.split("/", 1)[1] for n in errors)]) + "\n")
                f.write(",".join([str(steps), *(f"{v:.4f}" for v in errors.values())]) + "\n")

    def restore(self) -> pathlib.Path | None:
        """Loads the newest readable checkpoint, if the run has one."""
        try:
            path, state = load_latest_checkpoint(self.run_dir / "checkpoints")
        except CheckpointError:
            return None
        self.load_state_dict(state)
        return path


def learner_main(
    run_dir: str,
    cfg: dict[str, Any],
    observation_space,
    action_space,
    fps: float,
    stop_event,
    parent_pid: int,
) -> None:
    """Entry point of the learner process (multiprocessing, spawn).

    cfg: the session's config as a plain dict; the spaces: the actor's env's (the learner never
    opens the robot); fps: the control rate, for the model's videos. Stops when stop_event is set or the actor process is gone (then the
    actor's own safety took care of the robot; the learner just checkpoints). Output goes to
    <run>/learner.log; an exception ends the process with exit code 1 and its traceback there."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from slac_robot.backends import make_agent, make_replay, resolve_device

    import signal

    # Ctrl-C reaches the whole process group: the actor decides, and sets stop_event.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_dir_path = pathlib.Path(run_dir)
    log = open(run_dir_path / "learner.log", "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:
        conf = OmegaConf.create(cfg)
        session = conf.session
        threads = int(session.learner_threads) or max(1, (os.cpu_count() or 2) - int(session.actor_threads))
        torch.set_num_threads(threads)
        device = resolve_device(str(conf.device))
        torch.manual_seed(conf.seed)
        spaces = SimpleNamespace(observation_space=observation_space, action_space=action_space)
        agent = make_agent(conf.agent, spaces, device)
        replay = make_replay(conf.replay, run_dir_path / "replay", spaces, agent.sequence_length,
                             int(conf.task.episode_steps))
        schedule = Schedule(**conf.schedule)
        learner = Learner(
            agent, replay, schedule, run_dir_path, seed=int(conf.seed) + 1,
            publish_every_updates=int(session.publish_every_updates),
            checkpoint_every_updates=int(session.checkpoint_every_updates),
            log_every_updates=int(session.log_every_updates),
            fps=fps,
            heldout_steps=int(conf.schedule.eval_episodes) * int(conf.task.episode_steps),
        )
        restored = learner.restore()
        print(f"learner: pid {os.getpid()}, device {device}, {threads} threads; "
              f"{'resumed from ' + str(restored) if restored else 'fresh networks'}; "
              f"{replay.total_episodes} episodes ({replay.total_steps} steps) on disk", flush=True)
        if restored is not None:
            publish_policy(run_dir_path, agent, replay.total_steps)

        def should_stop() -> bool:
            return stop_event.is_set() or os.getppid() != parent_pid

        learner.run(should_stop, poll_s=float(session.poll_s))
        print(f"learner: stopped after {agent.model_updates} model and {agent.sac_updates} SAC updates", flush=True)
    except BaseException:
        traceback.print_exc()
        log.flush()
        os._exit(1)
    log.flush()


def load_policy(path: pathlib.Path, agent: Agent) -> dict[str, Any]:
    """The policy weights (as agent.policy_state_dict gives them) of a checkpoint or a published
    policy file, for `slac-robot eval`. Raises CheckpointError naming an unreadable file."""
    path = pathlib.Path(path)
    if path.name == POLICY_FILE:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)["policy"]
        except Exception as error:
            raise CheckpointError(f"policy file {path} is unreadable ({type(error).__name__}: {error})") from None
    state = load_checkpoint(path)["agent"]
    try:
        return agent.policy_from_state_dict(state)
    except KeyError as error:
        raise CheckpointError(f"checkpoint {path} holds no {error} weights: it was written by another agent "
                              "than its run's config.yaml names") from None


class LearnerDied(RuntimeError):
    """The learner process ended while the session ran; its traceback is in <run>/learner.log."""


class LearnerProcess:
    """The actor's handle on the learner process: start it, take up its weights, watch it, stop it.

    run_dir, cfg (plain dict), observation_space, action_space, fps: passed to learner_main.
    nice: how much lower the learner's scheduling priority is than the actor's.
    `poll_policy()` costs one stat() per call and never waits for the learner."""

    def __init__(self, run_dir: pathlib.Path, cfg: dict[str, Any], observation_space, action_space, fps: float,
                 nice: int = 10):
        import multiprocessing

        # spawn, not fork: the actor holds MuJoCo's GL context, camera threads and a serial port.
        context = multiprocessing.get_context("spawn")
        self.run_dir = pathlib.Path(run_dir)
        self.stop_event = context.Event()
        self.process = context.Process(
            target=learner_main, name="slac-learner",
            args=(str(self.run_dir), cfg, observation_space, action_space, fps, self.stop_event, os.getpid()),
        )
        self.subscriber = PolicySubscriber(self.run_dir)
        self.nice = nice

    def start(self) -> None:
        self.process.start()
        # Niced from its first instruction (its imports take seconds of CPU): the actor's ticks come first.
        os.setpriority(os.PRIO_PROCESS, self.process.pid, os.getpriority(os.PRIO_PROCESS, 0) + self.nice)

    def check_alive(self) -> None:
        """Raises LearnerDied when the learner process has ended."""
        code = self.process.exitcode
        if code is not None:
            raise LearnerDied(
                f"the learner process ended (exit code {code}) while the session ran; see "
                f"{self.run_dir / 'learner.log'}; resume with: slac-robot train resume={self.run_dir}"
            )

    def poll_policy(self) -> dict[str, Any] | None:
        """Newly published policy weights, or None."""
        return self.subscriber.poll()

    def stop(self, timeout_s: float) -> int | None:
        """Asks the learner to checkpoint and end; waits up to timeout_s, then terminates it.
        Returns its exit code."""
        self.stop_event.set()
        if self.process.pid is None:
            return None
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5.0)
        return self.process.exitcode
