"""A session on Ray (`session.learner=ray`): one learner, one or more robots' actors, any machines.

The same actor/learner split as the two-process session (runtime/learner.py), with Ray as the
transport instead of a shared folder:

  driver (the `slac-robot train` process): connects to Ray (a local instance, or a cluster at
      session.ray.address), starts the learner and the robots' actors, waits for them, and
      passes Ctrl-C / SIGTERM on to every actor.
  LearnerService (a Ray actor, on a GPU when the device asks for one): the learner of
      runtime/learner.py (`build_learner`: the same update, checkpoint and publication code) in a
      thread; `ingest` writes each episode it receives crash-safe into <run>/replay/ exactly as
      an actor on the same machine would (agent/replay.place_episode_file), once: a resent
      episode it already holds is acknowledged again, not stored twice. Published weights go to
      <run>/policy.pt (for `slac-robot eval`) and into Ray's object store, from where every actor
      fetches them (`wait_policy`, a long poll).
  RobotService (a Ray actor per robot, placed on the robot's computer by a custom resource
      named after the robot): owns its robot (env, safety layer, event log) and runs the
      Trainer's control loop. Each finished episode goes to <run>/actors/<robot>/outbox/ on its
      own disk; a sender thread ships the outbox to the learner, oldest first, and deletes a file
      only once the learner acknowledged it (the episode is then durable in the learner's
      replay). A receiver thread long-polls for new weights. The control thread never waits on
      Ray: it reads a flag and a slot that those threads fill.

Faults: a robot's actor killed (kill -9 of its worker) leaves its servos to their Bus Watchdog;
Ray restarts it (session.ray.actor_restarts) and it resumes from what the learner and its outbox
hold. The learner killed: every actor makes its robot safe at its next tick, keeps its episodes,
and waits session.ray.learner_wait_s for the learner (Ray restarts it up to
session.ray.learner_restarts times from its newest checkpoint); then it goes on, or ends with
the `resume=` line and its backlog on disk, which a resumed session sends first.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import pathlib
import re
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np

from slac_robot.agent.history import vector_dims
from slac_robot.agent.replay import (
    BackgroundEpisodeWriter,
    CorruptEpisodeError,
    Episode,
    _list_episode_files,
    _next_free_index,
    episode_stamps,
    episode_summary,
    place_episode_file,
)
from slac_robot.config import ConfigError
from slac_robot.runtime.clock import RateKeeper

OUTBOX = "outbox"
ACTORS_DIR = "actors"
ROBOT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


# ---------------------------------------------------------------------------------------------
# Configuration and connection (the driver's side)
# ---------------------------------------------------------------------------------------------

def robot_names(session) -> list[str]:
    """The robots' names: session.robots when given (one actor per robot, placed by the Ray
    custom resource of the same name), else robot0..robot<N-1> for session.actors=N (simulated
    claws, placed anywhere). Raises ConfigError naming the fix."""
    actors = session.actors
    if session.robots:
        names = [str(name) for name in session.robots]
        bad = [name for name in names if not ROBOT_NAME.match(name)]
        if bad:
            raise ConfigError(f"session.robots={names}: {bad[0]!r} is not a name of letters, digits, _ and -")
        if len(set(names)) != len(names):
            raise ConfigError(f"session.robots={names} names a robot twice; give each robot its own name")
        if actors not in (1, len(names)):
            raise ConfigError(f"session.actors={actors} but session.robots names {len(names)} robots; "
                              f"leave session.actors out (one actor per robot)")
        return names
    return [f"robot{i}" for i in range(actors)]


def is_local_address(address: str | None) -> bool:
    """Whether session.ray.address means a Ray instance on this machine only."""
    if not address or address in ("local", "auto"):
        return address != "auto"
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1", "[::1]")


def check_ray_auth(address: str | None, key: str) -> None:
    """Refuses Ray without its token: never on this machine (RAY_AUTH_MODE=disabled), and across
    machines only with RAY_AUTH_MODE=token (Ray 2.60 does not turn it on there by itself)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        raise ConfigError("RAY_AUTH_MODE=disabled: Ray's processes listen on every network interface, and without "
                          "its token anyone who reaches them runs code here; unset RAY_AUTH_MODE (or set it to token)")
    if not is_local_address(address) and os.environ.get("RAY_AUTH_MODE") != "token":
        raise ConfigError(
            f"{key}={address} joins a Ray cluster across machines, which must use token authentication: set "
            "RAY_AUTH_MODE=token (and the same token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH) on every node and "
            "here; see the README, 'Beyond one machine'")


def check_ray_config(session) -> None:
    """Checks session.ray before anything starts (one line naming the fix)."""
    ray_cfg = session.ray
    check_ray_auth(ray_cfg.address, "session.ray.address")
    for key in ("learner_restarts", "actor_restarts"):
        if int(ray_cfg[key]) < 0:
            raise ConfigError(f"session.ray.{key}={ray_cfg[key]} must be 0 or more")
    for key in ("learner_wait_s", "ack_timeout_s", "connect_timeout_s"):
        value = float(ray_cfg[key])
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"session.ray.{key}={ray_cfg[key]} must be a positive number of seconds")
    for name, overrides in (session.robot_overrides or {}).items():
        for override in overrides:
            if "=" not in str(override):
                raise ConfigError(f"session.robot_overrides.{name}: {override!r} is not key=value")


def connect(address: str | None, min_cpus: int) -> None:
    """Connects this process to Ray. address null/"local": starts a Ray instance for this
    session on this machine, with no dashboard, Ray's token authentication as 2.60 sets it up
    for local instances, and at least min_cpus logical CPUs (every actor and the learner must
    fit; they share the real cores as the two-process session does). Otherwise joins the
    cluster at address (`ray start --head` ran there)."""
    import ray

    if ray.is_initialized():
        return
    quiet = dict(log_to_driver=False, logging_level="WARNING", configure_logging=True)
    if not address or address == "local":
        ray.init(include_dashboard=False, num_cpus=max(os.cpu_count() or 1, min_cpus), **quiet)
    else:
        ray.init(address=str(address), **quiet)


def actor_config(cfg: dict[str, Any], robot: str, overrides: dict[str, list[str]] | None) -> dict[str, Any]:
    """cfg (plain dict) with this robot's own settings (session.robot_overrides.<robot>: dotted
    key=value items, e.g. backend.port=/dev/ttyUSB1) applied."""
    import yaml
    from omegaconf import OmegaConf

    conf = OmegaConf.create(cfg)
    for override in (overrides or {}).get(robot, []):
        key, value = str(override).split("=", 1)
        OmegaConf.update(conf, key, yaml.safe_load(value), force_add=True)
    return OmegaConf.to_container(conf, resolve=True)


def robot_seed(seed: int, index: int) -> int:
    """Robot `index`'s own seed from the session's: distinct per robot, the same on resume."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


# ---------------------------------------------------------------------------------------------
# The learner
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RobotCounts:
    """What the learner's replay holds of one robot."""

    episodes: int = 0
    steps: int = 0
    trips: int = 0
    next_index: int = 0  # the robot's next episode index (one past the highest held)


class LearnerService:
    """The learner as a Ray actor (see the module docstring). Methods run on Ray's threads
    (max_concurrency): `ingest` and `wait_policy` while the update loop runs in its own thread.

    run_dir: the run directory on the learner's machine; cfg: the session's config (plain dict).
    The learner itself starts at the first `attach` (an actor's spaces and control rate are what
    it builds its agent from; the learner never opens a robot)."""

    def __init__(self, run_dir: str, cfg: dict[str, Any]):
        from omegaconf import OmegaConf

        self.run_dir = pathlib.Path(run_dir)
        self.conf = OmegaConf.create(cfg)
        (self.run_dir / "replay").mkdir(parents=True, exist_ok=True)
        self._log = open(self.run_dir / "learner.log", "a", buffering=1)
        self._lock = threading.Lock()  # ingest: one writer of replay/ and the rows at a time
        self._policy = threading.Condition()
        self._policy_version = 0
        self._policy_item: tuple[int, float, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: str | None = None
        # Who this learner is: a learner Ray restarted has another, so that every actor notices
        # (its robot made safe, re-attached, its policy versions counted from 0 again).
        self.incarnation = f"{os.getpid()}-{time.time_ns()}"
        self.learner = None
        self._spaces = None  # the first robot's (observation, action) spaces: every robot's must match
        self._writer = None
        self.counts: dict[str, RobotCounts] = {}
        self._received: set[tuple[str, int]] = set()
        self._scan_replay()
        session = self.conf.session
        try:  # the actors' ticks come first where they share the machine
            os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + int(session.learner_nice))
        except OSError:
            pass
        self.say(f"learner: pid {os.getpid()} (Ray actor on {os.uname().nodename}); "
                 f"{sum(c.episodes for c in self.counts.values())} episodes from {len(self.counts)} robots on disk")

    def say(self, line: str) -> None:
        print(line, file=self._log, flush=True)

    def _scan_replay(self) -> None:
        """Which (robot, episode index) the replay already holds: a resent episode is not stored twice."""
        directory = self.run_dir / "replay"
        for _, steps, name in _list_episode_files(directory):
            try:
                robot, index = episode_stamps(directory / name).origin
            except CorruptEpisodeError:
                continue  # the replay moves it aside with a warning when it loads it
            self._count(robot, index, steps, tripped=False)

    def _count(self, robot: str, index: int, steps: int, tripped: bool) -> RobotCounts:
        counts = self.counts.setdefault(robot, RobotCounts())
        counts.episodes += 1
        counts.steps += steps
        counts.trips += int(tripped)
        counts.next_index = max(counts.next_index, index + 1)
        self._received.add((robot, index))
        return counts

    # ----- actors join -----
    def attach(self, robot: str, observation_space, action_space, fps: float) -> dict[str, Any]:
        """A robot's actor joins (or rejoins): starts the learner at the first call. Returns what
        the replay holds of that robot (RobotCounts as a dict), from which the actor resumes,
        and this learner's "incarnation"."""
        with self._lock:
            if self.learner is None:
                self._start_learner(observation_space, action_space, fps)
            elif (observation_space, action_space) != self._spaces:
                raise ConfigError(f"robot {robot}'s observations or actions differ from the first robot's; "
                                  "give every robot the same camera size and task")
            self.say(f"learner: robot {robot} attached")
            return {**dataclasses.asdict(self.counts.get(robot, RobotCounts())), "incarnation": self.incarnation}

    def _start_learner(self, observation_space, action_space, fps: float) -> None:
        import torch

        from slac_robot.backends import resolve_device
        from slac_robot.runtime.learner import build_learner

        session = self.conf.session
        actors_here = len(robot_names(session))
        threads = int(session.learner_threads) or max(1, (os.cpu_count() or 2) - actors_here * int(session.actor_threads))
        torch.set_num_threads(threads)
        device = resolve_device(str(self.conf.device))
        # The probe scores the first robot's evaluation episodes: on the learner's disk when the
        # robot's actor runs on the same machine or the run directory is shared (NFS); else none.
        heldout_dir = self.run_dir / ACTORS_DIR / robot_names(session)[0] / "eval_replay"
        learner = build_learner(self.run_dir, self.conf, observation_space, action_space, fps, device,
                                publish=self._publish, heldout_dir=heldout_dir)
        self._spaces = (observation_space, action_space)
        restored = learner.restore()
        self.learner = learner
        self.say(f"learner: device {device}, {threads} threads; "
                 f"{'resumed from ' + str(restored) if restored else 'fresh networks'}")
        if restored is not None:
            self._publish(learner.agent, learner.replay.total_steps)
        self._thread = threading.Thread(target=self._run, name="learner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.learner.run(self._stop.is_set, poll_s=float(self.conf.session.poll_s))
            a = self.learner.agent
            self.say(f"learner: stopped after {a.model_updates} model and {a.sac_updates} SAC updates")
        except BaseException as error:
            from slac_robot.runtime.learner import _failure_reason

            self._failure = _failure_reason(error, self.run_dir)
            self.say(traceback.format_exc())
            self.say(f"learner: stopped: {self._failure}")

    def _publish(self, agent, env_steps: int) -> None:
        """The learner's publication: policy.pt (eval reads it) and the object store (the actors)."""
        import ray

        from slac_robot.runtime.learner import publish_policy

        publish_policy(self.run_dir, agent, env_steps)  # refuses non-finite weights before anyone sees them
        ref = ray.put({"policy": agent.policy_state_dict(), "sac_updates": agent.sac_updates})
        with self._policy:
            self._policy_version += 1
            self._policy_item = (self._policy_version, time.time(), ref)
            self._policy.notify_all()

    # ----- episodes in -----
    def ingest(self, robot: str, robot_episode: int, steps: int, content: bytes, episode_return: float,
               tripped: str) -> bool:
        """Stores one episode file's bytes (agent/replay.episode_bytes) from robot's actor into
        <run>/replay/, crash-safe; returns True once it is durable (False: it was already held,
        a resend). The learner's train_episodes.csv gets one row and TensorBoard the robot's
        return, trips and control-loop jitter. A failed write raises (the actor keeps the
        episode and sends it again)."""
        from slac_robot.storage import append_csv_row

        with self._lock:
            if (robot, robot_episode) in self._received:
                self.say(f"learner: {robot}'s episode {robot_episode} came again (its acknowledgement was lost); "
                         "acknowledged, kept once")
                return False
            stamps = episode_stamps(io.BytesIO(content))
            if stamps.origin != (robot, robot_episode):
                raise ValueError(f"an episode sent as {robot}'s episode {robot_episode} is stamped {stamps.origin}; "
                                 "not stored")
            directory = self.run_dir / "replay"
            place_episode_file(directory, _next_free_index(directory), steps, content)
            p99_ms, overruns = stamps.period_error_p99_ms, stamps.overruns
            counts = self._count(robot, robot_episode, steps, bool(tripped))
            total = sum(c.episodes for c in self.counts.values())
            total_steps = sum(c.steps for c in self.counts.values())
            trips_per_1000 = 1000.0 * counts.trips / max(counts.steps, 1)
            measured = overruns >= 0  # an actor whose loop is not paced has no jitter: blank cells
            append_csv_row(self.run_dir / "train_episodes.csv", {
                "episode": total, "env_steps": total_steps, "robot": robot, "robot_episode": robot_episode,
                "robot_env_steps": counts.steps, "return": episode_return, "steps": steps, "tripped": tripped,
                "robot_trips_per_1000_steps": round(trips_per_1000, 3),
                "robot_period_error_p99_ms": round(p99_ms, 3) if measured else "",
                "robot_overruns": overruns if measured else "",
            })
            writer = self._robots_writer()
            writer.add_scalar(f"robots/{robot}/episode_return", episode_return, total_steps)
            writer.add_scalar(f"robots/{robot}/trips_per_1000_steps", trips_per_1000, total_steps)
            if measured:
                writer.add_scalar(f"robots/{robot}/period_error_p99_ms", p99_ms, total_steps)
                writer.add_scalar(f"robots/{robot}/overruns", overruns, total_steps)
            return True

    def _robots_writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard" / "robots"))
        return self._writer

    # ----- weights out -----
    def wait_policy(self, known_version: int, timeout_s: float):
        """(incarnation, newest policy or None): the policy once it is newer than known_version,
        as (version, publish time (time.time()), [object ref of {"policy", "sac_updates"}]); None
        after timeout_s. The incarnation tells an actor whether the learner was restarted."""
        with self._policy:
            self._policy.wait_for(lambda: self._policy_version > known_version, timeout=timeout_s)
            if self._policy_version <= known_version:
                return self.incarnation, None
            version, published, ref = self._policy_item
            return self.incarnation, (version, published, [ref])  # a list: Ray passes the reference, not the weights

    # ----- the driver's view -----
    def status(self) -> dict[str, Any]:
        agent = self.learner.agent if self.learner is not None else None
        return {
            "pid": os.getpid(),
            "episodes": sum(c.episodes for c in self.counts.values()),
            "steps": sum(c.steps for c in self.counts.values()),
            "robots": {name: dataclasses.asdict(c) for name, c in self.counts.items()},
            "sac_updates": agent.sac_updates if agent is not None else 0,
            "model_updates": agent.model_updates if agent is not None else 0,
            "failure": self._failure,
        }

    def stop(self, timeout_s: float) -> dict[str, Any]:
        """Ends the update loop (its last checkpoint and publication), waits up to timeout_s."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._writer is not None:
            self._writer.close()
        return self.status()


# ---------------------------------------------------------------------------------------------
# A robot's actor
# ---------------------------------------------------------------------------------------------

class LearnerLost(RuntimeError):
    """The learner cannot be reached (its process died, its node left, the link dropped)."""


class LearnerLink:
    """A robot actor's link to the learner: a sender thread ships the outbox, a receiver thread
    long-polls for weights. The control thread only calls `check_alive()` and `poll_policy()`,
    which read what the threads left and never wait on Ray.

    learner: the LearnerService's handle; robot: this robot's name; outbox: its episode folder;
    ack_timeout_s: how long a send or a call may take before the learner counts as lost;
    poll_s: how often the sender looks at the outbox; say: where a file set aside is reported
    (the actor's log)."""

    def __init__(self, learner, robot: str, outbox: pathlib.Path, ack_timeout_s: float, poll_s: float,
                 say=print):
        self.learner, self.robot, self.outbox = learner, robot, pathlib.Path(outbox)
        self.say = say
        self.ack_timeout_s, self.poll_s = ack_timeout_s, poll_s
        self._stop = threading.Event()
        self._lost: str | None = None
        self.incarnation: str | None = None  # the learner's this link attached to (RobotService sets it)
        self.restarted = False  # the learner answering is another incarnation: re-attach first
        self._slot: tuple[int, float, dict[str, Any]] | None = None
        self._slot_lock = threading.Lock()
        self.version = 0
        self.acknowledged = 0
        self.bytes_sent = 0
        self.delivered_ms: dict[int, float] = {}  # policy version -> publish to in this process
        self.taken_up_ms: dict[int, float] = {}  # policy version -> publish to the control loop acting with it
        self.policy_sac_updates = 0
        self._threads = [threading.Thread(target=self._send_loop, name=f"{robot}-send", daemon=True),
                         threading.Thread(target=self._receive_loop, name=f"{robot}-receive", daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def lost(self) -> str | None:
        """Why the learner counts as lost, or None while it answers."""
        return self._lost

    def _mark(self, error: BaseException | None) -> None:
        self._lost = None if error is None else f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"

    # ----- the control thread -----
    def check_alive(self) -> None:
        """Raises LearnerLost when the learner stopped answering or was restarted (read from flags)."""
        if self._lost is not None:
            raise LearnerLost(f"the learner cannot be reached ({self._lost})")
        if self.restarted:
            raise LearnerLost("the learner was restarted (its process ended)")

    def poll_policy(self) -> dict[str, Any] | None:
        """Newly received policy weights, or None (a swap of a slot the receiver filled)."""
        if self._slot is None:
            return None
        with self._slot_lock:
            item, self._slot = self._slot, None
        if item is None:
            return None
        version, published, payload = item
        self.taken_up_ms[version] = (time.time() - published) * 1000.0
        self.policy_sac_updates = int(payload["sac_updates"])
        return payload["policy"]

    # ----- threads -----
    def pending(self) -> list[pathlib.Path]:
        """The outbox's episode files, oldest first."""
        return [self.outbox / name for _, _, name in _list_episode_files(self.outbox)]

    def _send_loop(self) -> None:
        import ray

        while not self._stop.is_set():
            for path in self.pending():
                if self._stop.is_set():
                    return
                try:
                    self._send(path)
                except CorruptEpisodeError as error:
                    self._set_aside(path, str(error))
                except ray.exceptions.RayTaskError as error:
                    cause = getattr(error, "cause", error)
                    if isinstance(cause, (ValueError, CorruptEpisodeError)):  # the learner refused this file
                        self._set_aside(path, f"the learner refused it: {cause}")
                        continue
                    self._mark(error)  # it could not store it (its disk?): kept here, sent again later
                    break
                except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError, ConnectionError) as error:
                    self._mark(error)
                    break
                except OSError:
                    break  # a file the writer thread still places; looked at again next round
            self._stop.wait(self.poll_s)

    def _set_aside(self, path: pathlib.Path, reason: str) -> None:
        """Moves an outbox file that cannot be sent to outbox/corrupt/ (never deletes it) and says so."""
        corrupt = self.outbox / "corrupt"
        corrupt.mkdir(exist_ok=True)
        os.replace(path, corrupt / path.name)
        self.say(f"actor {self.robot}: episode file {path} not sent ({reason}); moved to {corrupt / path.name}")

    def _send(self, path: pathlib.Path) -> None:
        import ray

        content = path.read_bytes()
        index, steps, episode_return, tripped = episode_summary(path)
        ray.get(self.learner.ingest.remote(self.robot, index, steps, content, episode_return, tripped),
                timeout=self.ack_timeout_s)
        self._mark(None)
        os.unlink(path)  # acknowledged: the episode is durable in the learner's replay
        self.acknowledged += 1
        self.bytes_sent += len(content)

    def _receive_loop(self) -> None:
        import ray

        while not self._stop.is_set():
            try:
                answer = ray.get(self.learner.wait_policy.remote(self.version, 1.0), timeout=self.ack_timeout_s)
                self._mark(None)
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError, ConnectionError) as error:
                self._mark(error)
                self._stop.wait(self.poll_s)
                continue
            incarnation, answer = answer
            if incarnation != self.incarnation:
                if not self.restarted:
                    self.restarted = True
                    self.version = 0  # a restarted learner counts its publications from 0 again
                continue
            if answer is None:
                continue
            version, published, (ref,) = answer
            try:
                payload = ray.get(ref, timeout=self.ack_timeout_s)
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as error:
                self._mark(error)
                continue
            self.version = version
            self.delivered_ms[version] = (time.time() - published) * 1000.0
            with self._slot_lock:
                self._slot = (version, published, payload)

    def wait_until_sent(self, timeout_s: float) -> int:
        """Waits up to timeout_s for the outbox to empty; returns the episodes still in it."""
        deadline = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < deadline:
            time.sleep(self.poll_s)
        return len(self.pending())

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.ack_timeout_s + 2.0)


class _RemoteStop:
    """The Trainer's stop check (runtime/stop.StopSignal's interface) for an actor that has no
    terminal: the driver's `stop(signum)` call sets it."""

    def __init__(self) -> None:
        self.received: int | None = None

    def check(self) -> None:
        from slac_robot.runtime.stop import Interrupted

        if self.received is not None:
            raise Interrupted(self.received)


class RobotService:
    """A robot's actor as a Ray actor (see the module docstring): its env, event log and
    safety layer, the Trainer's control loop, its outbox and link to the learner.

    cfg: the session's config with this robot's overrides (plain dict); robot: its name; index:
    its place among the session's robots (its seed); run_dir: the run directory's path, made on
    this robot's machine as <run>/actors/<robot>/."""

    def __init__(self, cfg: dict[str, Any], robot: str, index: int, run_dir: str):
        from omegaconf import OmegaConf

        self.conf = OmegaConf.create(cfg)
        self.robot, self.index = robot, index
        self.run_dir = pathlib.Path(run_dir)
        self.dir = self.run_dir / ACTORS_DIR / robot
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stopper = _RemoteStop()
        self.link: LearnerLink | None = None
        self._log = open(self.dir / "actor.log", "a", buffering=1)
        self.say(f"actor {robot}: pid {os.getpid()} on {os.uname().nodename}")

    def say(self, line: str) -> None:
        print(line, file=self._log, flush=True)

    def pid(self) -> int:
        return os.getpid()

    def stop(self, signum: int) -> None:
        """Asks the control loop to stop at its next tick (the driver received signum)."""
        self.stopper.received = signum

    def _report_link(self) -> None:
        """<run>/actors/<robot>/link.json: episodes acknowledged, bytes sent, and per published
        policy version the ms from its publication to this process (delivered) and to the
        first control tick acting with it (taken_up; a poll per tick adds up to one period)."""
        import json

        from slac_robot.storage import write_atomically

        link = self.link
        report = {"acknowledged": link.acknowledged, "bytes_sent": link.bytes_sent,
                  "delivered_ms": link.delivered_ms, "taken_up_ms": link.taken_up_ms}
        write_atomically(self.dir / "link.json", json.dumps(report, indent=1).encode())

    def run(self, learner) -> dict[str, Any]:
        """Runs this robot's share of the session; returns {"robot", "code", "message",
        "episodes", "steps", "unsent"}. code: 0 finished, 128+n stopped by signal n, 1 failed
        (message says why; the robot is safe, its unsent episodes are in its outbox)."""
        try:
            return self._run(learner)
        except BaseException as error:
            self.say(traceback.format_exc())
            return {"robot": self.robot, "code": 1, "message": f"{type(error).__name__}: {error}",
                    "episodes": 0, "steps": 0, "unsent": -1}

    def _run(self, learner) -> dict[str, Any]:
        import torch

        from slac_robot.agent.replay import recorded_episodes
        from slac_robot.backends import make_agent, make_env
        from slac_robot.runtime.clock import set_real_time_priority, write_control_loop_report
        from slac_robot.runtime.stop import Interrupted
        from slac_robot.runtime.train import Schedule, SessionHalted, Trainer, TripPolicy
        from slac_robot.safety import EventLog, ResetFailed

        conf, session = self.conf, self.conf.session
        robots = len(robot_names(session))
        env = make_env(conf, realtime=bool(session.realtime))
        rate_keeper = env.clock if isinstance(env.clock, RateKeeper) else None
        outbox_writer = None
        link = None
        code, message = 1, ""
        trainer = None
        try:
            env.event_log = EventLog(self.dir / "safety_events.jsonl")
            torch.set_num_threads(int(session.actor_threads))
            torch.manual_seed(robot_seed(int(conf.seed), self.index))
            agent = make_agent(conf.agent, env, torch.device("cpu"))  # acts only: the learner's weights
            counts = self._attach(learner, env)
            outbox = self.dir / OUTBOX
            held, held_steps = recorded_episodes(outbox)
            outbox_writer = OutboxWriter(outbox, self.robot, counts["next_index"], env, rate_keeper)
            link = LearnerLink(learner, self.robot, outbox, float(session.ray.ack_timeout_s), float(session.poll_s),
                               say=self.say)
            link.incarnation = counts["incarnation"]
            self.link = link
            link.start()
            schedule = Schedule(**{**conf.schedule,
                                   "total_env_steps": math.ceil(int(conf.schedule.total_env_steps) / robots),
                                   "initial_collection_steps": math.ceil(int(conf.schedule.initial_collection_steps) / robots)})
            trainer = Trainer(
                env, env, agent, outbox_writer, schedule, self.dir, seed=robot_seed(int(conf.seed), self.index),
                video_scale=int(conf.video.scale), show_progress=False, learner=link, rate_keeper=rate_keeper,
                on_stop=env.make_safe, trip_policy=TripPolicy(session.after_trip, int(session.max_trips_in_a_row), None),
            )
            trainer.progress.episodes = counts["episodes"] + held
            trainer.progress.env_steps = counts["steps"] + held_steps
            trainer.progress.trips = counts["trips"]
            self.say(f"actor {self.robot}: {counts['episodes']} episodes at the learner, {held} in the outbox")
            if int(session.actor_rt_priority):
                refused = set_real_time_priority(int(session.actor_rt_priority))
                if refused:
                    self.say(f"actor {self.robot}: {refused}")
            while True:
                try:
                    trainer.train(self.stopper)
                    code = 0
                    break
                except LearnerLost as lost:
                    env.make_safe(f"LearnerLost: {lost}")
                    self.say(f"actor {self.robot}: {lost}; robot made safe, waiting up to "
                             f"{float(session.ray.learner_wait_s):g} s for the learner")
                    if not self._wait_for_learner(learner, env, float(session.ray.learner_wait_s)):
                        message = (f"{lost}; robot made safe, {len(link.pending())} episodes kept in {link.outbox}")
                        break
                    if rate_keeper is not None:
                        rate_keeper.restart()  # the wait was meant: neither jitter nor an overrun
                    self.say(f"actor {self.robot}: the learner is back; going on")
        except Interrupted as interrupt:
            code, message = interrupt.exit_code, str(interrupt)
        except (SessionHalted, ResetFailed) as error:
            env.make_safe(type(error).__name__)
            message = str(error)
        except BaseException as error:
            try:
                env.make_safe(f"exception {type(error).__name__}: {error}")
            finally:
                raise
        finally:
            problems = []
            for what, close in (("closing the robot and cameras", env.close),
                                ("writing the last episodes", outbox_writer.close if outbox_writer else None)):
                if close is None:
                    continue
                try:
                    close()
                except Exception as error:
                    problems.append(f"{what} failed: {type(error).__name__}: {error}")
            unsent = -1
            if link is not None:
                unsent = link.wait_until_sent(float(session.stop_timeout_s) if link.lost is None else 0.0)
                link.close()
                try:
                    self._report_link()
                except OSError as error:
                    problems.append(f"writing link.json failed: {error}")
            if rate_keeper is not None:
                self.say(f"actor {self.robot}: " + write_control_loop_report(rate_keeper, self.dir / "control_loop.json"))
        if problems:
            code, message = code or 1, "; ".join([message] + problems if message else problems)
        p = trainer.progress if trainer is not None else None
        outcome = {"robot": self.robot, "code": code, "message": message, "unsent": unsent,
                   "episodes": p.episodes if p else 0, "steps": p.env_steps if p else 0}
        self.say(f"actor {self.robot}: ended: {outcome}")
        return outcome

    def _call_attach(self, learner, env) -> dict[str, Any]:
        """One call of the learner's attach (what it holds of this robot); Ray's errors and
        a timeout after session.ray.ack_timeout_s go to the caller."""
        import ray

        return ray.get(learner.attach.remote(self.robot, env.observation_space, env.action_space,
                                             env.metadata["render_fps"]),
                       timeout=float(self.conf.session.ray.ack_timeout_s))

    def _attach(self, learner, env) -> dict[str, Any]:
        """Joins the learner (waiting for it up to session.ray.connect_timeout_s)."""
        import ray

        deadline = time.monotonic() + float(self.conf.session.ray.connect_timeout_s)
        while True:
            try:
                return self._call_attach(learner, env)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as error:
                if time.monotonic() > deadline:
                    raise LearnerLost(f"the learner did not answer within session.ray.connect_timeout_s "
                                      f"({type(error).__name__})") from None
                time.sleep(0.5)

    def _wait_for_learner(self, learner, env, wait_s: float) -> bool:
        """After a lost learner: waits (the robot safe) until it answers again, re-attaching;
        False after wait_s or when a stop was asked for."""
        import ray

        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.stopper.received is not None:
                return False
            try:
                attached = self._call_attach(learner, env)
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
                time.sleep(0.5)
                continue
            if attached["incarnation"] != self.link.incarnation:
                self.link.version = 0
            self.link.incarnation = attached["incarnation"]
            self.link.restarted = False
            deadline_link = time.monotonic() + float(self.conf.session.ray.ack_timeout_s) * 2 + 2.0
            while self.link.lost is not None and time.monotonic() < deadline_link:
                time.sleep(0.1)  # the link's threads see it too before the control loop goes on
            if self.link.lost is None:
                return True
        return False

class OutboxWriter(BackgroundEpisodeWriter):
    """The robot actor's episode writer: finished episodes, stamped with the robot's name and
    its own episode index, go to the outbox by a thread (the control loop never waits for the
    disk); a file's index in its name is the robot's episode index.

    Each episode also carries how well the control loop kept its rate since the previous one
    was written (the episode, and the reset and any evaluation before it: p99 |period error| and
    overruns), when its loop is paced, so that the learner can show every robot's jitter.

    outbox: the folder; robot: the name; next_index: the learner's next index for this robot
    (the outbox's own files count too); env: its spaces give the shapes; rate_keeper: the
    control loop's, or None when it is not paced (no jitter is stamped)."""

    def __init__(self, outbox: pathlib.Path, robot: str, next_index: int, env, rate_keeper: RateKeeper | None):
        super().__init__(outbox, env.action_space.shape[0], env.observation_space["image"].shape,
                         vector_dims(env.observation_space))
        self.robot = robot
        held = [index for index, _, _ in _list_episode_files(self.directory)]
        self.next_index = max([next_index, *(i + 1 for i in held)])
        self.rate_keeper = rate_keeper
        self._ticks_seen = self._overruns_seen = 0

    def _write(self, episode: Episode):
        episode = dataclasses.replace(episode, robot=self.robot, robot_episode=self.next_index)
        if self.rate_keeper is not None:
            keeper = self.rate_keeper
            errors_ms = keeper.recent_period_errors_ms(keeper.ticks_recorded - self._ticks_seen)
            p99_ms = float(np.percentile(errors_ms, 99)) if errors_ms.size else 0.0
            episode = dataclasses.replace(episode, period_error_p99_ms=p99_ms,
                                          overruns=keeper.overruns - self._overruns_seen)
            self._ticks_seen, self._overruns_seen = keeper.ticks_recorded, keeper.overruns
        self.next_index += 1
        return super()._write(episode)

    def _file_index(self, episode: Episode) -> int:
        return episode.robot_episode


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------

def run_session(cfg, run_dir: pathlib.Path, schedule) -> int:
    """`slac-robot train session.learner=ray`: connects to Ray, starts the learner and one actor
    per robot, waits for them, passes a stop signal on, and prints the outcome. Returns the
    exit code (0; 128+n after signal n; 1 when an actor or the learner failed, with the
    `resume=` line)."""
    import ray
    from omegaconf import OmegaConf

    from slac_robot.runtime.stop import StopSignal

    session = cfg.session
    names = robot_names(session)
    plain = OmegaConf.to_container(cfg, resolve=True)
    resume_hint = f"resume with: slac-robot train resume={run_dir}"
    connect(session.ray.address, min_cpus=len(names) + 1)
    ray_cfg = session.ray
    device = str(cfg.device)
    wants_gpu = device.startswith("cuda") or (device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1)
    if device.startswith("cuda") and ray.cluster_resources().get("GPU", 0) < 1:
        raise ConfigError(f"device={device} but the Ray cluster has no GPU; use device=cpu or start a GPU node")
    if wants_gpu:
        plain["device"] = "cuda"  # Ray shows the learner the one GPU it was given, as cuda:0
    learner_cls = ray.remote(LearnerService)
    learner = learner_cls.options(
        num_cpus=0 if wants_gpu else 1, num_gpus=1 if wants_gpu else 0,
        max_restarts=int(ray_cfg.learner_restarts), max_concurrency=2 * len(names) + 8,
    ).remote(str(run_dir), plain)
    robot_cls = ray.remote(RobotService)
    actors, runs = {}, {}
    for index, name in enumerate(names):
        options = dict(num_cpus=1, max_restarts=int(ray_cfg.actor_restarts),
                       max_task_retries=-1 if int(ray_cfg.actor_restarts) else 0, max_concurrency=4)
        if session.robots:
            options["resources"] = {name: 1}  # the robot's computer: `ray start ... --resources='{"<name>": 1}'`
        actor = robot_cls.options(**options).remote(actor_config(plain, name, plain["session"].get("robot_overrides")),
                                                    name, index, str(run_dir))
        actors[name] = actor
        runs[actor.run.remote(learner)] = name
    where = "local Ray instance" if is_local_address(ray_cfg.address) else f"Ray cluster at {ray_cfg.address}"
    print(f"slac-robot train: run directory {run_dir} (learner on Ray, {len(names)} actors: {', '.join(names)}; "
          f"{where}{', learner on a GPU' if wants_gpu else ''})", flush=True)
    outcomes: dict[str, dict[str, Any]] = {}
    signalled = None
    learner_failure = None
    with StopSignal() as stop:
        next_look = time.monotonic()
        while len(outcomes) < len(names):
            ready, _ = ray.wait(list(runs), num_returns=1, timeout=0.5)
            for ref in ready:
                name = runs.pop(ref)
                try:
                    outcomes[name] = ray.get(ref)
                except ray.exceptions.RayError as error:
                    outcomes[name] = {"robot": name, "code": 1, "unsent": -1, "episodes": 0, "steps": 0,
                                      "message": f"its actor died beyond session.ray.actor_restarts "
                                                 f"({type(error).__name__})"}
            if stop.received is not None and signalled is None:
                signalled = stop.received
                for actor in actors.values():
                    actor.stop.remote(signalled)
            if time.monotonic() >= next_look and learner_failure is None:
                next_look = time.monotonic() + 2.0
                try:
                    learner_failure = ray.get(learner.status.remote(), timeout=float(ray_cfg.ack_timeout_s))["failure"]
                except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
                    pass  # restarting, or gone: the actors wait for it or end by themselves
                if learner_failure:
                    for actor in actors.values():
                        actor.stop.remote(15)
    try:
        summary = ray.get(learner.stop.remote(float(session.stop_timeout_s)), timeout=float(session.stop_timeout_s) + 30)
    except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as error:
        summary = {"failure": f"the learner is gone ({type(error).__name__})", "episodes": None}
    for name in names:
        o = outcomes[name]
        print(f"slac-robot train: {name}: {o['episodes']} episodes, {o['steps']} steps"
              f"{'; ' + o['message'] if o['message'] else ''}"
              f"{'; ' + str(o['unsent']) + ' episodes not yet at the learner' if o['unsent'] > 0 else ''}",
              file=sys.stderr if o["code"] else sys.stdout)
    failure = summary.get("failure") or learner_failure
    codes = [o["code"] for o in outcomes.values()]
    if signalled is not None:
        print(f"slac-robot train: stopped by signal {signalled}; every robot made safe; {resume_hint}", file=sys.stderr)
        return 128 + signalled
    if failure or any(codes):
        print(f"slac-robot train: {failure or 'an actor failed'}; {resume_hint}", file=sys.stderr)
        return 1
    print(f"{summary['steps']} environment steps, {summary['episodes']} episodes from {len(names)} robots; "
          f"results in {run_dir}")
    return 0
