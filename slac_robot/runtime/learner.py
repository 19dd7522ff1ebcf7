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
    CorruptCheckpoint,
    NonFiniteWeights,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    load_policy_file,
    prune_checkpoints,
    save_checkpoint,
    set_aside,
)
from slac_robot.agent.probe import heldout_probe
from slac_robot.agent.replay import SequenceReplay
from slac_robot.runtime.media import write_model_media
from slac_robot.runtime.train import BEST_POLICY_FILE, Schedule, UpdateScalars
from slac_robot.storage import append_csv_row, describe_write_failure, write_failure

POLICY_FILE = "policy.pt"


def publish_policy(run_dir: pathlib.Path, agent: Agent, env_steps: int) -> None:
    """Writes the policy's weights where the actor looks for them (atomically: it never reads
    half; with a digest, and never with non-finite weights: NonFiniteWeights, see checkpoint.py)."""
    save_checkpoint(pathlib.Path(run_dir) / POLICY_FILE, {"policy": agent.policy_state_dict(), "env_steps": env_steps})


def read_policy_file(path: pathlib.Path) -> dict[str, Any]:
    """The policy weights of a published policy file, verified (digest, finite weights);
    CorruptCheckpoint names the file when it cannot be trusted."""
    return load_policy_file(path)["policy"]


class PolicySubscriber:
    """The actor's side of publish_policy: `poll()` returns newly published weights, else None.

    A poll is one stat() of the file; it loads only when the file was replaced since the last
    poll. A damaged file (digest or non-finite weights) is never taken up: it is named in a
    warning and moved to <run>/corrupt/, and the actor keeps the weights it has until the
    learner publishes again."""

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
        self._seen = key
        try:
            state = read_policy_file(self.path)
        except FileNotFoundError:
            return None
        except CorruptCheckpoint as error:
            try:
                still_there = (os.stat(self.path).st_ino, os.stat(self.path).st_mtime_ns) == key
            except FileNotFoundError:
                still_there = False
            if still_there:  # not a good file the learner published since the read
                set_aside(self.path, f"{error}; the actor keeps its current weights")
            return None
        self.version += 1
        return state


class Learner:
    """SLAC updates from a replay folder that another process fills.

    agent, replay: the learner's own (the replay opened on <run>/replay).
    schedule: initial_collection_steps, initial_model_updates, updates_per_step, batch sizes,
        keep_checkpoints, as in `slac-robot train`'s schedule section.
    publish_every_updates: publish the policy after this many SAC updates.
    checkpoint_every_updates: write a checkpoint after this many SAC updates (and when stopping).
    log_every_updates: TensorBoard scalars every this many SAC updates.
    heldout_steps: steps of the newest evaluation episodes (in heldout_dir, written by the
        actor) that the probe scores at each checkpoint (agent/probe.py); 0: no probe.
    heldout_dir: where those episodes are; None: <run>/eval_replay (a Ray session: the first
        robot's, <run>/actors/<robot>/eval_replay, where the learner's disk holds it).
    publish: how a policy reaches the actors, called with (agent, recorded env steps); default:
        publish_policy, the <run>/policy.pt file (a Ray session adds its object store).
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
        publish: Callable[[Agent, int], None] | None = None,
        heldout_dir: pathlib.Path | None = None,
    ):
        self.agent, self.replay, self.schedule = agent, replay, schedule
        self.run_dir = pathlib.Path(run_dir)
        self.heldout_dir = pathlib.Path(heldout_dir) if heldout_dir is not None else self.run_dir / "eval_replay"
        self.publish = publish or (lambda agent, env_steps: publish_policy(self.run_dir, agent, env_steps))
        self.rng = np.random.default_rng(seed)
        self.publish_every_updates = publish_every_updates
        self.checkpoint_every_updates = checkpoint_every_updates
        self.log_every_updates = log_every_updates
        self.fps = fps
        self.heldout_steps = heldout_steps
        self.pretrained = False
        self._writer = None
        self._scalars = UpdateScalars()
        self._rate_mark = (time.monotonic(), 0)

    # ----- the loop -----
    def run(self, should_stop: Callable[[], bool], poll_s: float) -> None:
        """Updates until should_stop(); then a last checkpoint and publication. An exception
        ends the loop; the last checkpoint is then still written, unless the exception was that
        the weights diverged (NonFiniteWeights: the newest good checkpoint must stay the newest)
        or that a write failed (the disk is full or read-only: another write would fail too)."""
        failure: BaseException | None = None
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
                self.publish(self.agent, self.replay.total_steps)
        except BaseException as error:
            failure = error
            raise
        finally:
            try:
                if self.replay.num_episodes and not (isinstance(failure, NonFiniteWeights) or write_failure(failure)):
                    self.save()
                    self.publish(self.agent, self.replay.total_steps)
            except Exception:
                if failure is None:
                    raise  # otherwise the first failure is the one to report
            finally:
                self._close_writer(quietly=failure is not None)

    def _close_writer(self, quietly: bool) -> None:
        """Closes TensorBoard's writer; quietly: a failure to flush it (the disk that is full)
        does not hide the error that ended the loop."""
        if self._writer is None:
            return
        try:
            self._writer.close()
        except Exception:
            if not quietly:
                raise

    def updates_due(self) -> int:
        """How many SAC updates the recorded data allows now (pre-training counts as one chunk)."""
        s = self.schedule
        if self.replay.num_episodes == 0 or self.replay.total_steps < s.initial_collection_steps:
            return 0
        if not self.pretrained:
            return 1
        return s.updates_allowed(self.replay.total_steps) - self.agent.sac_updates

    def pretrain(self, should_stop: Callable[[], bool]) -> None:
        """The paper's model-only pre-training on the initial data (a stop is honoured between
        updates; the pre-training then starts over on resume)."""
        updates = self.schedule.initial_model_updates if self.agent.has_latent_model else 0
        for _ in range(updates):
            if should_stop():
                return
            self._scalars.add(self.agent.pretrain_step(self.replay, self.rng, self.schedule.model_batch_size))
        self.pretrained = True
        self.publish(self.agent, self.replay.total_steps)

    def update(self) -> None:
        s = self.schedule
        self._scalars.add(self.agent.train_step(self.replay, self.rng, s.model_batch_size, s.sac_batch_size))

    # ----- logging -----
    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard" / "learner"))
        return self._writer

    def _log(self) -> None:
        step = self.replay.total_steps
        for name, value in self._scalars.take().items():
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
        if not self.heldout_dir.is_dir():
            return
        errors = heldout_probe(self.agent, self.replay, self.heldout_dir, self.heldout_steps,
                               np.random.default_rng(steps)).errors
        for name, value in errors.items():
            self.writer.add_scalar(name, value, steps)
        if errors:
            append_csv_row(self.run_dir / "probe.csv",
                           {"env_steps": steps, **{n.split("/", 1)[1]: round(v, 4) for n, v in errors.items()}})

    def restore(self) -> pathlib.Path | None:
        """Loads the newest readable checkpoint, if the run has one."""
        try:
            path, state = load_latest_checkpoint(self.run_dir / "checkpoints")
        except CheckpointError:
            return None
        self.load_state_dict(state)
        return path


def build_learner(run_dir: pathlib.Path, conf, observation_space, action_space, fps: float, device: torch.device,
                  publish: Callable[[Agent, int], None] | None = None,
                  heldout_dir: pathlib.Path | None = None) -> Learner:
    """The Learner of a session from its config (an OmegaConf DictConfig of `slac-robot train`):
    its agent on `device`, its replay on <run>/replay, its schedule and session settings. Nothing
    is restored yet (Learner.restore). The spaces are the actor's env's; fps: its control rate;
    publish, heldout_dir: as Learner's."""
    from types import SimpleNamespace

    from slac_robot.backends import make_agent, make_replay

    session = conf.session
    torch.manual_seed(conf.seed)
    spaces = SimpleNamespace(observation_space=observation_space, action_space=action_space)
    agent = make_agent(conf.agent, spaces, device)
    replay = make_replay(conf.replay, run_dir / "replay", spaces, agent.sequence_length, int(conf.task.episode_steps))
    return Learner(
        agent, replay, Schedule(**conf.schedule), run_dir, seed=int(conf.seed) + 1,
        publish_every_updates=int(session.publish_every_updates),
        checkpoint_every_updates=int(session.checkpoint_every_updates),
        log_every_updates=int(session.log_every_updates),
        fps=fps,
        heldout_steps=int(conf.schedule.eval_episodes) * int(conf.task.episode_steps),
        publish=publish,
        heldout_dir=heldout_dir,
    )


def learner_main(
    run_dir: str,
    cfg: dict[str, Any],
    observation_space,
    action_space,
    fps: float,
    stop_event,
    parent_pid: int,
    run_lock=None,
    reasons=None,
) -> None:
    """Entry point of the learner process (multiprocessing, spawn).

    cfg: the session's config as a plain dict; the spaces: the actor's env's (the learner never
    opens the robot); fps: the control rate, for the model's videos. Stops when stop_event is
    set or the actor process is gone (then the actor's own safety took care of the robot; the
    learner just checkpoints). run_lock: the session's hold on the run directory
    (runtime/run_lock.py), kept open until this process ends. reasons: the sending end of a
    pipe to the actor. Output goes to <run>/learner.log; an exception ends the process with exit
    code 1, its traceback there and one line saying why sent through `reasons`."""
    from omegaconf import OmegaConf

    from slac_robot.backends import resolve_device

    import signal

    # Ctrl-C reaches the whole process group: the actor decides, and sets stop_event.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_dir_path = pathlib.Path(run_dir)
    log = None
    try:
        log = open(run_dir_path / "learner.log", "a", buffering=1)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        conf = OmegaConf.create(cfg)
        session = conf.session
        threads = int(session.learner_threads) or max(1, (os.cpu_count() or 2) - int(session.actor_threads))
        torch.set_num_threads(threads)
        device = resolve_device(str(conf.device))
        learner = build_learner(run_dir_path, conf, observation_space, action_space, fps, device)
        agent, replay = learner.agent, learner.replay
        restored = learner.restore()
        print(f"learner: pid {os.getpid()}, device {device}, {threads} threads; "
              f"{'resumed from ' + str(restored) if restored else 'fresh networks'}; "
              f"{replay.total_episodes} episodes ({replay.total_steps} steps) on disk", flush=True)
        if restored is not None:
            learner.publish(agent, replay.total_steps)

        def should_stop() -> bool:
            return stop_event.is_set() or os.getppid() != parent_pid

        learner.run(should_stop, poll_s=float(session.poll_s))
        print(f"learner: stopped after {agent.model_updates} model and {agent.sac_updates} SAC updates", flush=True)
        log.flush()
    except BaseException as error:
        reason = _failure_reason(error, run_dir_path)
        if reasons is not None:
            try:
                reasons.send(reason)
            except OSError:
                pass  # the actor is gone; the log says it
        try:  # the log may be on the full disk that ended the learner
            traceback.print_exc()
            print(f"learner: stopped: {reason}", flush=True)
        except Exception:
            pass
        os._exit(1)


def _failure_reason(error: BaseException, run_dir: pathlib.Path) -> str:
    """One line on why the learner stopped, for the actor to print."""
    failed_write = write_failure(error)
    if failed_write is not None:
        return describe_write_failure(failed_write, run_dir)
    if isinstance(error, NonFiniteWeights):
        newest = list_checkpoints(run_dir / "checkpoints")
        kept = f"the newest good checkpoint, {newest[-1]}, is kept" if newest else "no checkpoint was written"
        return f"{error}; the learner stopped and wrote nothing: {kept}"
    message = str(error).strip().splitlines()
    return (f"{type(error).__name__}{': ' + message[0] if message else ''} "
            f"(traceback in {run_dir / 'learner.log'})")


def load_policy(path: pathlib.Path, agent: Agent) -> dict[str, Any]:
    """The policy weights (as agent.policy_state_dict gives them) of a checkpoint, a published
    policy file or a run's best_policy.pt, for `slac-robot eval`, verified. Raises
    CheckpointError naming a missing file, CorruptCheckpoint a damaged one."""
    path = pathlib.Path(path)
    if path.name in (POLICY_FILE, BEST_POLICY_FILE):
        try:
            return read_policy_file(path)
        except FileNotFoundError:
            raise CheckpointError(f"policy file {path} does not exist") from None
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
    run_lock: the actor's RunLock; the learner shares it (it outlives a killed actor).
    `poll_policy()` costs one stat() per call and never waits for the learner."""

    def __init__(self, run_dir: pathlib.Path, cfg: dict[str, Any], observation_space, action_space, fps: float,
                 nice: int = 10, run_lock=None):
        import multiprocessing

        # spawn, not fork: the actor holds MuJoCo's GL context, camera threads and a serial port.
        context = multiprocessing.get_context("spawn")
        self.run_dir = pathlib.Path(run_dir)
        self.stop_event = context.Event()
        self._reasons, reasons = context.Pipe(duplex=False)
        self.process = context.Process(
            target=learner_main, name="slac-learner",
            args=(str(self.run_dir), cfg, observation_space, action_space, fps, self.stop_event, os.getpid(),
                  None if run_lock is None else run_lock.for_child(), reasons),
        )
        self.run_lock = run_lock
        self.subscriber = PolicySubscriber(self.run_dir)
        self.nice = nice
        self._reason: str | None = None
        self.reported = False  # check_alive raised LearnerDied: its end was told already

    def start(self) -> None:
        self.process.start()
        # Niced from its first instruction (its imports take seconds of CPU): the actor's ticks come first.
        os.setpriority(os.PRIO_PROCESS, self.process.pid, os.getpriority(os.PRIO_PROCESS, 0) + self.nice)
        if self.run_lock is not None:
            self.run_lock.record_learner(self.process.pid)

    def check_alive(self) -> None:
        """Raises LearnerDied when the learner process has ended."""
        code = self.process.exitcode
        if code is not None:
            reason = self.reason()
            self.reported = True
            raise LearnerDied(
                f"the learner process ended (exit code {code}) while the session ran: "
                f"{reason or 'see ' + str(self.run_dir / 'learner.log')}; "
                f"resume with: slac-robot train resume={self.run_dir}"
            )

    def reason(self) -> str | None:
        """The line the learner sent on why it stopped, if it failed and could say so."""
        try:
            if self._reason is None and self._reasons.poll():
                self._reason = self._reasons.recv()
        except (EOFError, OSError):
            pass
        return self._reason

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
