"""`slac-robot COMMAND [hydra overrides]`: the project's command line.

Each command composes configs/<command>.yaml with the overrides (hydra syntax: key=value,
group=option) and runs. Bad config values end with a one-line message and exit code 2.
"""

from __future__ import annotations

import datetime
import pathlib
import sys
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from slac_robot.config import ConfigError, load_config, require_int, require_number, require_positive, require_ratio
from slac_robot.hardware.errors import DynamixelError
from slac_robot.interfaces import CameraError, StaleFrameError
from slac_robot.runtime.run_lock import RunDirectoryInUse
from slac_robot.safety import ResetFailed, SafetyTrip
from slac_robot.storage import describe_write_failure, write_atomically, write_failure

USAGE = """usage: slac-robot COMMAND [key=value ...] [--cfg]

commands:
{commands}

Overrides use hydra's syntax, e.g.  slac-robot rollout task=three_goal episodes=5 policy=random
--cfg prints the composed config and exits."""


def rollout(cfg: DictConfig) -> int:
    """Runs cfg.episodes episodes in the configured backend; writes metrics and videos."""
    from slac_robot.backends import make_policy

    return _run_rollout(cfg, "rollout", lambda env: make_policy(cfg.policy, env))


def evaluate(cfg: DictConfig) -> int:
    """Runs a trained policy (a run's newest checkpoint, or one file); see configs/eval.yaml."""
    from slac_robot.agent.checkpoint import CheckpointError, list_checkpoints
    from slac_robot.runtime.train import BEST_POLICY_FILE

    if (cfg.run is None) == (cfg.checkpoint is None):
        raise ConfigError("pass one of run=RUN_DIR (a `slac-robot train` run) or checkpoint=FILE")
    if cfg.best and cfg.run is None:
        raise ConfigError("best=true reads a run's best_policy.pt: pass run=RUN_DIR "
                          "(or checkpoint=RUN_DIR/best_policy.pt)")
    if cfg.best:
        run_dir = pathlib.Path(str(cfg.run))
        paths = [run_dir / BEST_POLICY_FILE]
        if not paths[0].is_file():
            print(f"slac-robot eval: no {BEST_POLICY_FILE} in {run_dir}: it is written at the run's first evaluation "
                  "(schedule.eval_every_episodes); drop best=true for its newest checkpoint", file=sys.stderr)
            return 1
    elif cfg.run is not None:
        run_dir = pathlib.Path(str(cfg.run))
        candidates = list_checkpoints(run_dir / "checkpoints")
        paths = list(reversed(candidates)) + ([run_dir / "policy.pt"] if (run_dir / "policy.pt").is_file() else [])
        if not paths:
            print(f"slac-robot eval: no checkpoint or policy.pt in {run_dir}; train first, or pass checkpoint=FILE",
                  file=sys.stderr)
            return 1
    else:
        paths = [pathlib.Path(str(cfg.checkpoint))]
        run_dir = paths[0].parent.parent if paths[0].parent.name == "checkpoints" else paths[0].parent
    saved = run_dir / "config.yaml"
    if saved.is_file():
        from slac_robot.config import load_saved_config

        cfg.agent = load_saved_config(saved, "run").agent
    try:
        return _run_rollout(cfg, "eval", lambda env: _trained_policy(cfg, env, paths), spread_goals=True)
    except CheckpointError as error:
        print(f"slac-robot eval: {error}", file=sys.stderr)
        return 1


def _trained_policy(cfg: DictConfig, env, paths: list[pathlib.Path]):
    """The agent of cfg.agent with the weights of the first readable file in paths (newest first)."""
    import warnings

    import torch

    from slac_robot.agent.checkpoint import CheckpointError, CorruptCheckpoint, set_aside
    from slac_robot.agent.policy import AgentPolicy
    from slac_robot.backends import make_agent
    from slac_robot.runtime.learner import load_policy

    agent = make_agent(cfg.agent, env, torch.device("cpu"))
    errors = []
    for path in paths:
        try:
            policy_state = load_policy(path, agent)
            break
        except CorruptCheckpoint as error:
            errors.append(str(error))
            if cfg.run is not None and not cfg.best:  # found in a run: moved aside like a corrupt episode
                set_aside(path, f"{error}; trying an older one")
            else:  # the file the user named stays where it is
                warnings.warn(f"{error}", stacklevel=2)
        except CheckpointError as error:
            errors.append(str(error))
            warnings.warn(f"{error}; trying an older one", stacklevel=2)
    else:
        raise CheckpointError("; ".join(errors))
    try:
        agent.load_policy_state_dict(policy_state)
    except RuntimeError as error:
        raise ConfigError(f"the policy's weights do not fit agent sizes of {cfg.run or cfg.checkpoint}'s config: "
                          f"{str(error).splitlines()[0]}") from None
    print(f"slac-robot eval: policy from {path} ({policy_state['sac_updates']} SAC updates)")
    return AgentPolicy(agent, env.observation_space, explore=bool(cfg.explore))


def _run_rollout(cfg: DictConfig, command: str, make_policy, spread_goals: bool = False) -> int:
    """Runs cfg.episodes episodes of make_policy(env) with metrics, videos and a plot (rollout, eval);
    spread_goals: the goals spread over the task's and the starts around them
    (env.evaluation_options), as in the trainer's evaluations, rather than drawn."""
    from slac_robot.backends import make_env, task_kind
    from slac_robot.runtime.rollout import run_episodes
    from slac_robot.runtime.stop import Interrupted, StopSignal

    if task_kind(cfg.task) != "valve_turn":  # its metrics, plot and reset are the valve's
        raise ConfigError(f"slac-robot {command} runs the valve (task=fixed, three_goal or random); a PointReach "
                          "run's evaluations are in its eval.csv and videos/")
    episodes = require_int("episodes", cfg.episodes)
    require_int("seed", cfg.seed, minimum=0)
    require_int("video.agent_scale", cfg.video.agent_scale)
    env = make_env(cfg, render=bool(cfg.video.view))
    try:
        policy = make_policy(env)
        out_dir = _run_dir(cfg, command)
        _save_config(cfg, out_dir / "config.yaml")
        with StopSignal() as stop:
            results = run_episodes(
                env,
                policy,
                episodes=episodes,
                seed=cfg.seed,
                out_dir=out_dir,
                agent_video=bool(cfg.video.agent),
                agent_video_scale=cfg.video.agent_scale,
                view_video=bool(cfg.video.view),
                stop=stop,
                reset_options=env.evaluation_options(episodes) if spread_goals else None,
            )
    except Interrupted as interrupt:
        env.make_safe(f"stopped by {interrupt.signal_name}")
        print(f"slac-robot {command}: {interrupt}; robot made safe; finished episodes are in {out_dir}", file=sys.stderr)
        return interrupt.exit_code
    except OSError as error:
        if write_failure(error) is not None:  # a full disk or read-only folder: the robot first (main says why)
            _make_safe(env, f"exception {type(error).__name__}: {error}")
        raise
    finally:
        env.close()
    successes = sum(r.success for r in results)
    mean_return = sum(r.episode_return for r in results) / len(results)
    mean_error = sum(r.final_abs_error_rad for r in results) / len(results)
    print(
        f"{len(results)} episodes: success {successes}/{len(results)}, "
        f"mean return {mean_return:.1f}, mean final |error| {mean_error:.3f} rad"
    )
    print(f"metrics and videos in {out_dir}")
    return 0


def train(cfg: DictConfig, overrides: list[str] | None = None) -> int:
    """Trains SLAC online in the configured backend and task; see configs/train.yaml.

    The actor (this process) owns the robot and runs the episodes; the learner trains in its own
    process (session.learner=process) or between steps (inline). Safety events go to
    <run>/safety_events.jsonl; any stop, fault, crash or failed write leaves the robot safe.
    Every value is checked before the run directory is made or locked, and the lock
    (runtime/run_lock.py) is taken before anything moves: one session per run directory.
    overrides: the command line as typed (a resumed run changes only what it names)."""
    from slac_robot.backends import agent_config, check_env_config, resolve_device, task_kind
    from slac_robot.runtime.run_lock import RunLock
    from slac_robot.runtime.train import Schedule

    run_dir = None
    if cfg.resume:
        run_dir = pathlib.Path(str(cfg.resume))
        cfg = _resumed_config(run_dir, cfg, list(overrides or ()))
    at_least_one = {"model_batch_size", "sac_batch_size", "eval_episodes", "keep_checkpoints"}
    ratios = {"updates_per_step"}  # the update-to-data ratio may be a fraction (0.5: every other step)
    schedule = Schedule(**{
        k: require_ratio(f"schedule.{k}", v) if k in ratios
        else require_int(f"schedule.{k}", v, minimum=1 if k in at_least_one else 0)
        for k, v in cfg.schedule.items()
    })
    require_int("seed", cfg.seed, minimum=0)
    session = cfg.session
    if session.learner not in ("process", "inline", "ray"):
        raise ConfigError(f"session.learner={session.learner!r} is not one of: process, inline, ray")
    if require_int("session.actors", session.actors, minimum=1) > 1 or session.robots:
        if session.learner != "ray":
            raise ConfigError(f"session.actors={session.actors} (or session.robots) needs session.learner=ray")
    if session.after_trip not in ("reset", "wait_for_person"):
        raise ConfigError(f"session.after_trip={session.after_trip!r} is not one of: reset, wait_for_person")
    for key in ("actor_threads", "publish_every_updates", "checkpoint_every_updates", "log_every_updates",
                "max_trips_in_a_row"):
        require_int(f"session.{key}", session[key])
    require_int("session.learner_threads", session.learner_threads, minimum=0)
    if not 0 <= require_int("session.actor_rt_priority", session.actor_rt_priority, minimum=0) <= 99:
        raise ConfigError(f"session.actor_rt_priority={session.actor_rt_priority} must be 0 (off) or 1-99")
    require_int("session.learner_nice", session.learner_nice, minimum=0)
    for key in ("poll_s", "stop_timeout_s"):
        require_positive(f"session.{key}", session[key])
    on_ray = session.learner == "ray"
    if on_ray:  # the learner's device is on its own node, which Ray picks (runtime/ray_session.py)
        from slac_robot.runtime.ray_session import check_ray_config, robot_names

        check_ray_config(session)
        robot_names(session)
    else:
        device = resolve_device(str(cfg.device))
    check_env_config(cfg)
    if task_kind(cfg.task) == "point_reach" and session.learner != "inline":
        # no clock: an actor that is not paced would outrun its learner's weights many times over
        raise ConfigError(f"task=point_reach has no control rate for a session.learner={session.learner} to "
                          "keep; train it with session.learner=inline")
    agent_config(cfg.agent, (cfg.camera.height_px, cfg.camera.width_px, 3))
    if run_dir is None:
        run_dir = _run_dir(cfg, "train")
    run_lock = RunLock.acquire(run_dir)
    try:
        if on_ray:
            from slac_robot.runtime.ray_session import run_session

            _save_config(cfg, run_dir / "config.yaml")
            return run_session(cfg, run_dir, schedule)
        return _train_session(cfg, run_dir, schedule, device, run_lock)
    finally:
        run_lock.release()  # the learner, if it still runs, keeps its own hold


def _train_session(cfg: DictConfig, run_dir: pathlib.Path, schedule, device, run_lock) -> int:
    """`train` once its config is checked and its run directory locked: builds the parts, runs
    the session, and closes every part whatever happened. Returns the exit code."""
    from slac_robot.agent.checkpoint import CheckpointError, NonFiniteWeights
    from slac_robot.agent.replay import BackgroundEpisodeWriter, recorded_episodes
    from slac_robot.backends import make_agent, make_env, make_replay, vector_dims
    from slac_robot.runtime.clock import RateKeeper, set_real_time_priority
    from slac_robot.runtime.learner import LearnerDied, LearnerProcess
    from slac_robot.runtime.stop import Interrupted, StopSignal
    from slac_robot.runtime.train import SessionHalted, Trainer, TripPolicy, space_needed
    from slac_robot.safety import EventLog, ResetFailed
    from slac_robot.safety.events import read_events
    import torch

    session = cfg.session
    in_process = session.learner == "process"
    resume_hint = f"resume with: slac-robot train resume={run_dir}"
    # One env for training and evaluation (evaluations run between episodes): a real claw
    # cannot be opened twice, and every episode is seeded.
    env = make_env(cfg, realtime=in_process and bool(session.realtime))
    clock = getattr(env, "clock", None)  # task=point_reach has no robot: no clock, no scripted reset
    rate_keeper = clock if isinstance(clock, RateKeeper) else None
    learner = None
    trainer = None
    replay = None
    outcome = None
    reported_write_failure = False
    try:
        if rate_keeper is not None and not in_process:
            raise ConfigError(
                "session.learner=inline updates between control steps, which this backend's real-time "
                "clock cannot wait for; use session.learner=process"
            )
        env.event_log = EventLog(run_dir / "safety_events.jsonl")
        ask_person = _ask_person_at_terminal()
        if hasattr(env, "scripted_reset"):
            env.scripted_reset.ask_person = ask_person  # a reset that failed its attempts asks, too
        torch.manual_seed(cfg.seed)  # the networks' initial weights and the policy's noise
        if in_process:
            torch.set_num_threads(session.actor_threads)
            agent = make_agent(cfg.agent, env, torch.device("cpu"))  # acts only: the learner's weights
            obs_space = env.observation_space
            # Episode files are written by a thread: the control loop never waits for the disk.
            replay = BackgroundEpisodeWriter(run_dir / "replay", env.action_space.shape[0],
                                             obs_space["image"].shape, vector_dims(obs_space))
            learner = LearnerProcess(run_dir, OmegaConf.to_container(cfg, resolve=True), obs_space,
                                     env.action_space, fps=env.metadata["render_fps"], nice=session.learner_nice,
                                     run_lock=run_lock)
        else:
            agent = make_agent(cfg.agent, env, device)
            replay = make_replay(cfg.replay, run_dir / "replay", env, agent.sequence_length, int(cfg.task.episode_steps))
        _save_config(cfg, run_dir / "config.yaml")
        trainer = Trainer(
            env, env, agent, replay, schedule, run_dir, seed=cfg.seed, video_scale=cfg.video.scale,
            learner=learner, rate_keeper=rate_keeper, on_stop=env.make_safe,
            trip_policy=TripPolicy(session.after_trip, session.max_trips_in_a_row, ask_person),
        )
        if in_process:
            trainer.progress.episodes, trainer.progress.env_steps = recorded_episodes(run_dir / "replay")
            trainer.progress.trips = sum(e["kind"] == "trip" for e in read_events(run_dir / "safety_events.jsonl"))
        elif cfg.resume:
            _restore(trainer, run_dir)
        where = f"learner process on {device}" if in_process else f"updates inline on {device}"
        print(f"slac-robot train: run directory {run_dir} ({where}; {trainer.progress.episodes} episodes recorded)")
        shortage = space_needed(run_dir, schedule, trainer.progress.env_steps, int(cfg.task.episode_steps),
                                env.observation_space["image"].shape, agent.state_dict())
        if shortage:
            print(f"slac-robot train: warning: {shortage}", file=sys.stderr)
        if learner is not None:
            learner.start()  # before the actor takes a real-time priority: the learner must not inherit it
        if session.actor_rt_priority:
            refused = set_real_time_priority(session.actor_rt_priority)
            if refused:
                print(f"slac-robot train: {refused}", file=sys.stderr)
        with StopSignal() as stop:
            trainer.train(stop)
        outcome = 0
    except Interrupted as interrupt:
        if trainer is None:  # the Trainer makes the robot safe itself, before its checkpoint
            _make_safe(env, f"stopped by {interrupt.signal_name}")
        saved = "checkpoint written, " if learner is None else ""
        print(f"slac-robot train: {interrupt}; robot made safe; {saved}{resume_hint}", file=sys.stderr)
        outcome = interrupt.exit_code
    except (CheckpointError, SessionHalted, LearnerDied, ResetFailed) as error:
        _make_safe(env, f"{type(error).__name__}")
        kept = "; nothing was written: the newest checkpoint is still the last good one" if isinstance(
            error, NonFiniteWeights) else ""
        print(f"slac-robot train: {error}{kept}", file=sys.stderr)
        reported_write_failure = "cannot write" in str(error)
        outcome = 1
    except BaseException as error:
        failed = write_failure(error)
        _make_safe(env, f"exception {type(error).__name__}: {error}")  # the robot first, then the message
        if failed is None:
            raise
        print(f"slac-robot train: {describe_write_failure(failed, run_dir)}; robot made safe; {resume_hint}",
              file=sys.stderr)
        reported_write_failure = True
        outcome = 1
    finally:
        problems = _close_session(env, replay, rate_keeper, learner, run_dir, float(session.stop_timeout_s))
    for problem, is_write_failure in problems:
        if not (is_write_failure and reported_write_failure):  # one message for one full disk
            print(f"slac-robot train: {problem}", file=sys.stderr)
            reported_write_failure = reported_write_failure or is_write_failure
            outcome = outcome or 1
    if outcome:
        return outcome
    p = trainer.progress
    print(f"{p.env_steps} environment steps, {p.episodes} episodes; results in {run_dir}")
    return 0


def _make_safe(env, reason: str) -> None:
    """env.make_safe, whose event line may not reach a full disk: the robot is safe before the
    line is written, so only that line is lost."""
    try:
        env.make_safe(reason)
    except Exception as error:
        if write_failure(error) is None:
            raise


def _close_session(env, replay, rate_keeper, learner, run_dir: pathlib.Path,
                   stop_timeout_s: float) -> list[tuple[str, bool]]:
    """Closes every part of a session, each whatever the others did: the env (the robot's
    torque off), the episode writer (every finished episode on disk before the learner's last
    look), the control loop's report, the learner. Returns what went wrong, one line each, with
    whether it was a failed write."""
    from slac_robot.agent.replay import BackgroundEpisodeWriter
    from slac_robot.runtime.clock import write_control_loop_report

    problems: list[tuple[str, bool]] = []

    def attempt(what: str, close: Callable[[], object]) -> None:
        try:
            close()
        except Exception as error:
            failed = write_failure(error)
            if failed is not None:
                problems.append((describe_write_failure(failed, run_dir), True))
            else:
                problems.append((f"{what} failed: {type(error).__name__}: {error}", False))

    attempt("closing the robot and cameras", env.close)
    if isinstance(replay, BackgroundEpisodeWriter):
        attempt("writing the last episodes", replay.close)
    if rate_keeper is not None:
        attempt("reporting the control loop", lambda: print(
            "slac-robot train: " + write_control_loop_report(rate_keeper, run_dir / "control_loop.json")))
    if learner is not None:
        code = learner.stop(stop_timeout_s)
        if code not in (0, None) and not learner.reported:
            reason = learner.reason()
            if reason is not None:
                problems.append((f"the learner ended with exit code {code}: {reason}", reason.startswith("cannot write")))
            else:
                problems.append((f"the learner ended with exit code {code}; see {run_dir / 'learner.log'}", False))
    return problems


def _save_config(cfg: DictConfig, path: pathlib.Path) -> None:
    """Writes a run's config.yaml whole or not at all (a resumed run's must survive a full disk)."""
    write_atomically(path, OmegaConf.to_yaml(cfg).encode())


def _ask_person_at_terminal() -> Callable[[str], bool] | None:
    """Asks at the terminal whether to go on after a fault; None when no one is there (no TTY)."""
    if not sys.stdin.isatty():
        return None

    def ask(message: str) -> bool:
        print(f"\n{message}", file=sys.stderr)
        answer = input("Make the claw safe to move, then press Enter to go on (q and Enter ends the session): ")
        return not answer.strip().lower().startswith("q")

    return ask


def _resumed_config(run_dir: pathlib.Path, cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The resumed run's own config.yaml, with only what this command line overrides changed.

    cfg: this command line composed (it validated the overrides); overrides: as typed. A key
    (schedule.total_env_steps=...) takes cfg's value; a group choice replaces that section
    (task=..., backend=...), except agent=..., which the run's weights must keep. Keys that the
    version which started the run did not have take this version's defaults (for the run's agent,
    backend and task), so that a run goes on after an upgrade; they are named on stderr, since one
    may change what the run sees."""
    from slac_robot.config import group_options, load_saved_config

    resumed = load_saved_config(run_dir / "config.yaml", "resume")
    choices = [f"{group}={resumed[group].name}" for group in ("agent", "backend", "task")
               if OmegaConf.select(resumed, f"{group}.name") in group_options(group)]
    defaults = OmegaConf.create(OmegaConf.to_container(load_config("train", choices)))
    named = [override.split("=", 1)[0].lstrip("+~") for override in overrides]
    added = sorted(key for key in _leaf_keys(defaults) - _leaf_keys(resumed)
                   if key not in named and key.split(".", 1)[0] not in named)
    if added:  # a new key can change what the run sees (backend.valve_marker): say so, with the way back
        shown = ", ".join(f"{key}={OmegaConf.select(defaults, key)}" for key in added)
        print(f"slac-robot train: {run_dir}/config.yaml predates these settings; the run goes on with this "
              f"version's defaults: {shown} (pass key=value on the command line to choose)", file=sys.stderr)
    resumed = OmegaConf.merge(defaults, resumed)
    for key in named:
        if key == "resume":
            continue
        if key == "agent":
            raise ConfigError(f"resume={run_dir}: the run trained agent={resumed.agent.name}; its weights cannot change "
                              "agent (start a new run for another agent)")
        if group_options(key):  # a group choice: its whole section
            resumed[key] = cfg[key]
        else:
            OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), force_add=True)
    resumed.resume = str(run_dir)
    return resumed


def _leaf_keys(cfg: DictConfig, prefix: str = "") -> set[str]:
    """The dotted keys of a config's values (a list counts as one value)."""
    keys: set[str] = set()
    for key, value in cfg.items():
        if isinstance(value, DictConfig):
            keys |= _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def _restore(trainer, run_dir: pathlib.Path) -> None:
    """Loads the newest readable checkpoint; finished episodes recorded after it stay in the replay
    and count as collected."""
    from slac_robot.agent.checkpoint import CheckpointError, load_latest_checkpoint

    try:
        path, state = load_latest_checkpoint(run_dir / "checkpoints")
    except CheckpointError:
        if trainer.replay.total_episodes == 0:
            raise
        print(f"slac-robot train: no checkpoint in {run_dir}; fresh networks, {trainer.replay.total_episodes} "
              "recorded episodes kept", file=sys.stderr)
    else:
        trainer.load_state_dict(state)
        print(f"slac-robot train: resumed from {path}")
    p, replay = trainer.progress, trainer.replay
    if replay.total_steps != p.env_steps:
        print(f"slac-robot train: the replay holds {replay.total_steps} steps in {replay.total_episodes} finished "
              f"episodes, the checkpoint counted {p.env_steps}; going on from the replay's count", file=sys.stderr)
        p.env_steps, p.episodes = replay.total_steps, replay.total_episodes
def emulate_bus(cfg: DictConfig) -> int:
    """Runs the bus emulator on a pseudo-terminal, its servos moving the simulated claw in real time."""
    import time

    from slac_robot.backends import make_simulation, start_bus_emulator
    from slac_robot.runtime.clock import RateKeeper
    from slac_robot.runtime.stop import Interrupted, StopSignal
    from slac_robot.sim import SimRobot

    backend = OmegaConf.to_container(cfg.backend, resolve=True)
    duration_s = None if cfg.duration_s is None else require_positive("duration_s", cfg.duration_s)
    simulation = make_simulation(backend)
    robot = SimRobot(simulation, backend["torque_constant_nm_per_a"], backend["ambient_temperature_c"])
    emulator, plant = start_bus_emulator(backend, simulation, robot)
    clock = RateKeeper(simulation.period_s)
    ids = ", ".join(str(i) for i in emulator.motors)
    print(f"Dynamixel bus emulator on {emulator.device_path} (Protocol 2.0, servos {ids}); Ctrl-C stops it", flush=True)
    started = time.monotonic()
    try:
        with StopSignal() as stop:
            while duration_s is None or time.monotonic() - started < duration_s:
                stop.check()
                with plant.lock:
                    plant.step_period()
                clock.tick()
    except Interrupted as interrupt:
        print(f"slac-robot emulate-bus: {interrupt}", file=sys.stderr)
        return interrupt.exit_code
    finally:
        emulator.stop()
        stats = emulator.stats
        print(f"{stats.instruction_packets} instruction packets, {stats.bytes_in + stats.bytes_out} bytes, "
              f"{stats.wire_time_s:.3f} s of wire time at {emulator.baud_rate} bit/s")
    return 0


def _bus_ids(backend: dict) -> list[int]:
    return [*backend["joint_ids"], *(i for i in (backend["valve_id"], backend["guide_id"]) if i is not None)]


def check_hardware(cfg: DictConfig) -> int:
    """Pings every configured motor and prints a table; exit 1 when anything is wrong."""
    from slac_robot.backends import make_joint_calibration, open_bus
    from slac_robot.hardware.check import format_table, survey

    backend = OmegaConf.to_container(cfg.backend, resolve=True)
    try:
        calibration = make_joint_calibration(backend["calibration_file"])
    except ConfigError as error:
        print(f"note: positions in counts ({error})")
        calibration = None
    bus, close = open_bus(backend)
    try:
        reports = survey(bus, _bus_ids(backend), calibration, multi_turn_ids=(backend["valve_id"],))
    finally:
        close()
    print(f"bus {bus.path} at {backend['baud_rate']} bit/s")
    print(format_table(reports))
    for report in reports:
        if report.advice:
            print(f"note: motor {report.motor_id}: {report.advice}")
    problems = [r for r in reports if r.problem]
    if problems:
        print(f"slac-robot check-hardware: {len(problems)} motor(s) with a problem: "
              + "; ".join(f"{r.motor_id}: {r.problem}" for r in problems), file=sys.stderr)
        return 1
    print(f"all {len(reports)} motors answer and report no error")
    return 0


def calibrate_joints(cfg: DictConfig) -> int:
    """Measures the joint offsets with the claw held at the reference pose; writes the calibration file."""
    from slac_robot.backends import make_joint_calibration, open_bus
    from slac_robot.calibration.joints import CalibrationError, JointCalibration, measure_offsets

    backend = OmegaConf.to_container(cfg.backend, resolve=True)
    output = cfg.output_file or backend["calibration_file"]
    if not output:
        raise ConfigError("calibrate-joints needs output_file=PATH (backend.calibration_file is null)")
    reference = [float(v) for v in cfg.reference_pose_rad]
    if len(reference) != len(backend["joint_ids"]):
        raise ConfigError(f"reference_pose_rad needs {len(backend['joint_ids'])} angles, got {len(reference)}")
    ids, targets = list(backend["joint_ids"]), list(reference)
    for key, ref in (("valve_id", cfg.valve_reference_rad), ("guide_id", cfg.guide_reference_rad)):
        if backend[key] is not None:
            ids.append(backend[key])
            targets.append(float(ref))
    output_path = pathlib.Path(str(output)).expanduser()
    # Scale and direction come from the file being replaced, else from ROBEL's nominal one.
    previous = make_joint_calibration(str(output_path) if output_path.is_file() else None)
    bus, close = open_bus(backend, hold_pose_rad=reference)
    try:
        for motor_id in ids:
            bus.write(motor_id, "torque_enable", 0)
        if cfg.wait_for_enter:
            input(f"Torque is off. Hold the claw at the reference pose {reference} (valve and guide at "
                  f"their zero), then press Enter... ")
        try:
            measured = measure_offsets(bus, ids, targets, previous, require_int("samples", cfg.samples),
                                       require_positive("max_spread_rad", cfg.max_spread_rad))
        except CalibrationError as error:
            print(f"slac-robot calibrate-joints: {error}", file=sys.stderr)
            return 1
    finally:
        close()
    calibration = JointCalibration({**previous.motors, **measured.motors})
    path = calibration.save(output_path, note=f"reference pose {reference}")
    print(f"{'ID':>3}  {'offset rad':>10}  {'change rad':>10}")
    for motor_id in ids:
        new, old = calibration[motor_id].offset_rad, previous[motor_id].offset_rad
        print(f"{motor_id:>3}  {new:>+10.4f}  {new - old:>+10.4f}")
    print(f"joint calibration written to {path}")
    return 0


def calibrate_camera(cfg: DictConfig) -> int:
    """Calibrates a camera's intrinsics from a folder of board images or live views; writes
    intrinsics.yaml, camera_info.yaml, report.png and views.csv. Exit 1 when refused."""
    from slac_robot.backends import make_board, make_hardware_camera
    from slac_robot.calibration import camera_calibration as calibration
    from slac_robot.calibration.collect import display_available, views_from_camera, views_from_folder
    from slac_robot.calibration.report import write_report
    from slac_robot.calibration.views import ViewSelector
    from slac_robot.interfaces import CameraError, StaleFrameError

    board = make_board(cfg.board)
    selection, capture, checks = cfg.selection, cfg.capture, cfg.checks
    min_corners = require_int("selection.min_corners", selection.min_corners)
    min_sharpness = require_number("selection.min_sharpness", selection.min_sharpness)
    min_motion = require_number("selection.min_motion", selection.min_motion)
    min_views = require_int("checks.min_views", checks.min_views)
    max_rms_px = require_positive("checks.max_rms_px", checks.max_rms_px)
    if cfg.distortion_model not in calibration.MODEL_FLAGS:
        raise ConfigError(f"distortion_model={cfg.distortion_model!r} is not one of: {', '.join(calibration.MODEL_FLAGS)}")

    def make_selector(image_size_px: tuple[int, int]) -> ViewSelector:
        return ViewSelector(board, image_size_px, min_corners, min_sharpness, min_motion)

    out_dir = _run_dir(cfg, "calibrate-camera")
    _save_config(cfg, out_dir / "config.yaml")
    try:
        if cfg.images:
            print(f"views from {cfg.images}:")
            selector = views_from_folder(cfg.images, make_selector)
            camera_name = pathlib.Path(str(cfg.images)).expanduser().resolve().name
        else:
            device = OmegaConf.to_container(cfg.camera_device, resolve=True)
            camera = make_hardware_camera(device, None)
            try:
                selector = views_from_camera(
                    camera,
                    make_selector,
                    views=require_int("capture.views", capture.views),
                    interval_s=require_positive("capture.interval_s", capture.interval_s),
                    timeout_s=require_positive("capture.timeout_s", capture.timeout_s),
                    display=display_available(capture.display),
                    out_dir=out_dir,
                )
            finally:
                camera.close()
            camera_name = camera.name.replace(" ", "_")
    except (CameraError, StaleFrameError) as error:
        print(f"slac-robot calibrate-camera: {error}", file=sys.stderr)
        return 1
    print(selector.summary())
    result = None
    try:
        calibration.require_enough_views(selector, min_views)
        result = calibration.calibrate(selector.views, selector.image_size_px, cfg.distortion_model)
        print("\n".join(calibration.summary_lines(result)))
        print(f"corner coverage of the image: {selector.coverage():.0%}")
        write_report(out_dir / "report.png", result, board.spec.describe())
        calibration.check_rms(result, max_rms_px)
    except calibration.CalibrationFailed as failure:
        print(f"slac-robot calibrate-camera: {failure}", file=sys.stderr)
        print(f"listing and report in {out_dir}", file=sys.stderr)
        return 1
    finally:
        calibration.write_listing(out_dir / "views.csv", selector, result)
    date = datetime.datetime.now().isoformat(timespec="seconds")
    written = calibration.write_results(out_dir, result, board.spec.describe(), date, camera_name)
    print(f"wrote {', '.join(str(p) for p in written)} and report.png, views.csv")
    print(f"use it: camera_device.calibration_file={written[0]}")
    return 0


def print_board(cfg: DictConfig) -> int:
    """Writes the configured calibration board as PNG and/or PDF at its true size."""
    from slac_robot.backends import make_board
    from slac_robot.calibration.printing import FORMATS, write_board

    board = make_board(cfg.board)
    formats = list(cfg.formats)
    if not formats or any(f not in FORMATS for f in formats):
        raise ConfigError(f"formats={formats} must name some of: {', '.join(FORMATS)}")
    dpi = require_int("dpi", cfg.dpi, minimum=72)
    margin_mm = require_number("margin_mm", cfg.margin_mm)
    if margin_mm < 0:
        raise ConfigError(f"margin_mm must be >= 0, got {margin_mm}")
    written = write_board(board, pathlib.Path(str(cfg.out)).expanduser(), formats, dpi, margin_mm)
    width_mm, height_mm = board.spec.size_mm
    print(f"{board.spec.describe()}: {width_mm:g} x {height_mm:g} mm plus {margin_mm:g} mm margins")
    print(f"wrote {', '.join(str(p) for p in written)}; print at 100% and measure a square (board.square_mm)")
    return 0


def locate_camera(cfg: DictConfig) -> int:
    """Finds the camera's pose relative to the D'Claw base from one view of a board at a known
    pose; writes extrinsics.yaml (and the view used) beside the intrinsics file."""
    import cv2

    from slac_robot.backends import make_board, make_crop_region, make_hardware_camera
    from slac_robot.calibration import extrinsics
    from slac_robot.calibration.intrinsics import load_intrinsics
    from slac_robot.hardware.cameras.image import ImagePipeline, ImageSettings
    from slac_robot.interfaces import CameraError

    if not cfg.intrinsics:
        raise ConfigError("intrinsics must be set: the intrinsics.yaml that calibrate-camera wrote for this camera")
    intrinsics_path = pathlib.Path(str(cfg.intrinsics)).expanduser()
    intrinsics = load_intrinsics(intrinsics_path)
    board = make_board(cfg.board)
    base_T_board = extrinsics.pose_matrix(cfg.board_pose.xyz_m, cfg.board_pose.rpy_deg)
    device = OmegaConf.to_container(cfg.camera_device, resolve=True)
    try:
        if cfg.image:
            bgr = cv2.imread(str(pathlib.Path(str(cfg.image)).expanduser()), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ConfigError(f"image={cfg.image} is not an image file OpenCV can read")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        else:
            camera = make_hardware_camera(device, None)
            try:
                rgb = camera.read(float("inf")).image
            finally:
                camera.close()
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        location = extrinsics.locate_camera(board, gray, intrinsics, base_T_board, require_positive("max_error_px", cfg.max_error_px))
    except (CameraError, extrinsics.LocateFailed) as error:
        print(f"slac-robot locate-camera: {error}", file=sys.stderr)
        return 1
    # The agent's region of the image, as the camera cuts it (crop, or the centred default).
    agent = ImageSettings(
        require_int("camera.width_px", cfg.camera.width_px),
        require_int("camera.height_px", cfg.camera.height_px),
        make_crop_region(device.get("crop")),
    )
    region = ImagePipeline(agent, intrinsics.width_px, intrinsics.height_px).crop
    sim = extrinsics.sim_camera_pose(location.base_T_camera, intrinsics, region)
    out = intrinsics_path.parent / "extrinsics.yaml"
    date = datetime.datetime.now().isoformat(timespec="seconds")
    extrinsics.save_extrinsics(out, location, base_T_board, sim, board.spec.describe(), str(intrinsics_path), date)
    cv2.imwrite(str(out.with_name("extrinsics_view.png")), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    x, y, z = location.base_T_camera[:3, 3]
    print(f"camera at ({x:.3f}, {y:.3f}, {z:.3f}) m in the base frame; corners fit within {location.reprojection_error_px:.2f} px")
    print(f"wrote {out}; place the simulated camera with backend.agent_camera.from_extrinsics={out}")
    return 0


def plot_results(cfg: DictConfig) -> int:
    """Draws the comparison figure of the runs under cfg.root (<setting>/<agent>_s<seed>/eval.csv)."""
    import re

    from slac_robot.runtime.plots import (budget_table, final_error_table, per_goal_table, plot_binned_success,
                                          plot_comparison, plot_success_by_start_over_steps, read_eval_curve,
                                          read_final_errors, read_per_goal, read_start_errors,
                                          read_train_start_errors, start_error_table, train_start_error_table)

    root = pathlib.Path(str(cfg.root))
    last_evaluations = require_int("per_goal.last_evaluations", cfg.per_goal.last_evaluations, minimum=1)
    bin_width_rad = require_positive("per_goal.bin_width_rad", cfg.per_goal.bin_width_rad)
    start_bin_width_rad = require_positive("by_start_error.bin_width_rad", cfg.by_start_error.bin_width_rad)
    final_last_evaluations = require_int("by_final_error.last_evaluations", cfg.by_final_error.last_evaluations,
                                         minimum=1)
    final_bin_width_rad = require_positive("by_final_error.bin_width_rad", cfg.by_final_error.bin_width_rad)
    budget_env_steps, target_success = _budgets(cfg.at_budget)
    train_bin_width_rad = require_positive("train_by_start_error.bin_width_rad", cfg.train_by_start_error.bin_width_rad)
    block_env_steps = require_int("train_by_start_error.block_env_steps", cfg.train_by_start_error.block_env_steps)
    min_episodes = require_int("train_by_start_error.min_episodes", cfg.train_by_start_error.min_episodes)
    curves: dict[str, dict[str, list]] = {}
    seeded: dict[str, dict[str, list]] = {}  # setting -> agent -> (seed, env_steps, success_rate) per run
    per_goal: dict[str, dict[str, list]] = {}
    start_errors: dict[str, dict[str, list]] = {}
    final_errors: dict[str, dict[str, list]] = {}
    train_starts: dict[str, dict[str, list]] = {}
    order = list(budget_env_steps)  # the figure's and tables' goal settings in at_budget's order (the paper's)

    def setting_first(eval_csv: pathlib.Path) -> tuple[int, str]:
        setting = eval_csv.parent.parent.name
        return (order.index(setting) if setting in order else len(order), str(eval_csv))

    for eval_csv in sorted(root.glob("*/*/eval.csv"), key=setting_first):
        match = re.fullmatch(r"(.+)_s(\d+)", eval_csv.parent.name)
        if match is None:
            continue
        setting, agent = eval_csv.parent.parent.name, match[1]
        if cfg.agents is not None and agent not in cfg.agents:
            continue
        curve = read_eval_curve(eval_csv)
        curves.setdefault(setting, {}).setdefault(agent, []).append(curve)
        seeded.setdefault(setting, {}).setdefault(agent, []).append((int(match[2]), curve[0], curve[1]))
        goals = read_per_goal(eval_csv, last_evaluations)
        if goals:
            per_goal.setdefault(setting, {}).setdefault(agent, []).append(goals)
        episodes_csv = eval_csv.with_name("eval_episodes.csv")
        starts = read_start_errors(episodes_csv, last_evaluations) if episodes_csv.is_file() else []
        if starts:
            start_errors.setdefault(setting, {}).setdefault(agent, []).append(starts)
        if episodes_csv.is_file() and (ends := read_final_errors(episodes_csv, final_last_evaluations)):
            final_errors.setdefault(setting, {}).setdefault(agent, []).append(ends)
        train_csv = eval_csv.with_name("train_episodes.csv")
        starts = read_train_start_errors(train_csv) if train_csv.is_file() else []
        if starts:
            train_starts.setdefault(setting, {}).setdefault(agent, []).append(starts)
    if not curves:
        chosen = f" of agents {list(cfg.agents)}" if cfg.agents is not None else ""
        print(f"slac-robot plot-results: no <setting>/<agent>_s<seed>/eval.csv{chosen} under {root}", file=sys.stderr)
        return 1
    out = pathlib.Path(str(cfg.out)) if cfg.out else root / "comparison.png"
    plot_comparison(curves, out, budget_env_steps, target_success)
    runs = sum(len(seeds) for agents in curves.values() for seeds in agents.values())
    print(f"{runs} runs in {len(curves)} goal settings: {out}")
    rows = per_goal_table(per_goal, bin_width_rad, set(cfg.per_goal.binned_settings))
    if rows:
        table = _write_table(out, "_per_goal", rows)
        plot_binned_success(rows, out.with_name(out.stem + "_per_goal.png"))
        print(f"success per goal over each run's last {last_evaluations} evaluations: {table} and its figure")
    rows = start_error_table(start_errors, start_bin_width_rad)
    if rows:
        table = _write_table(out, "_by_start_error", rows)
        plot_binned_success(rows, out.with_name(out.stem + "_by_start_error.png"), "start_error_low_rad",
                            "start_error_high_rad", "goal - valve at the start (rad)")
        print(f"success by the valve's start error over the same evaluations: {table} and its figure")
    rows = final_error_table(final_errors, final_bin_width_rad)
    if rows:
        table = _write_table(out, "_failures_by_final_error", rows)
        plot_binned_success(rows, out.with_name(out.stem + "_failures_by_final_error.png"), "final_error_low_rad",
                            "final_error_high_rad", "|goal - valve| at the end of a failed episode (rad)",
                            "share_of_failures", "failed_episodes", "share of the failed evaluations")
        print(f"where the valve stood when evaluations failed, over each run's last {final_last_evaluations} "
              f"evaluations: {table} and its figure")
    rows = train_start_error_table(train_starts, train_bin_width_rad, block_env_steps, min_episodes)
    if rows:
        table = _write_table(out, "_train_by_start_error", rows)
        plot_success_by_start_over_steps(rows, out.with_name(out.stem + "_train_by_start_error.png"))
        print(f"the training episodes' success by the valve's start error, per {block_env_steps} steps: "
              f"{table} and its figure")
    rows = budget_table(seeded, budget_env_steps, target_success, last_evaluations)
    if rows:
        table = _write_table(out, "_at_budget", rows)
        print(f"each run at its goal setting's step budget (at_budget), and the median over seeds: {table}")
        for row in rows:
            if row["seed"] == "median":
                print(f"  {row['setting']} {row['agent']}: median success {row['success_at_budget']:.2f} at "
                      f"<= {row['budget_env_steps']} steps (target {row['target_success']}; "
                      f"every seed at >= {row['last_env_steps']} steps), mean of the last "
                      f"{last_evaluations} {row['mean_last']:.2f}")
    return 0


def _write_table(figure: pathlib.Path, suffix: str, rows: list[dict[str, object]]) -> pathlib.Path:
    """Writes rows (dicts with the same keys) as <figure's stem><suffix>.csv beside the figure,
    atomically; returns its path."""
    from slac_robot.storage import csv_text

    table = figure.with_name(figure.stem + suffix + ".csv")
    write_atomically(table, csv_text(list(rows[0]), rows).encode())
    return table


def _budgets(at_budget: DictConfig) -> tuple[dict[str, int], dict[str, float]]:
    """plot-results' at_budget: (goal setting -> env steps, goal setting -> target success), the
    same settings in both."""
    budget_env_steps = {str(k): require_int(f"at_budget.env_steps.{k}", v) for k, v in at_budget.env_steps.items()}
    target_success = {}
    for setting, value in at_budget.target_success.items():
        key = f"at_budget.target_success.{setting}"
        target_success[str(setting)] = require_number(key, value)
        if not 0 <= value <= 1:
            raise ConfigError(f"{key} must be a success rate in [0, 1], got {value!r}")
    if set(budget_env_steps) != set(target_success):
        raise ConfigError(f"at_budget.env_steps and at_budget.target_success must name the same goal settings, "
                          f"got {sorted(budget_env_steps)} and {sorted(target_success)}")
    return budget_env_steps, target_success


def sweep(cfg: DictConfig) -> int:
    """Runs agents x goal settings x seeds as Ray tasks, each a `slac-robot train` run directory
    <root>/<setting>/<agent>_s<seed> (continued with resume= when it exists), and draws the
    comparison figure as runs finish; see configs/sweep.yaml and runtime/sweep.py."""
    from slac_robot.runtime.sweep import run_sweep

    return run_sweep(cfg)


COMMANDS: dict[str, tuple[Callable[[DictConfig], int], str]] = {
    "rollout": (rollout, "run episodes with a random or scripted policy; write metrics and videos"),
    "train": (train, "train an agent online (SLAC, or a SAC baseline: agent=...); resume=RUN_DIR"),
    "eval": (evaluate, "run a trained policy (run=RUN_DIR or checkpoint=FILE); metrics and videos"),
    "plot-results": (plot_results, "the comparison figure of many runs (root=FOLDER of <setting>/<agent>_s<seed>)"),
    "sweep": (sweep, "agents x goal settings x seeds as Ray tasks (a cluster or this machine), then the figure"),
    "emulate-bus": (emulate_bus, "run the Dynamixel bus emulator (simulated claw) on a pseudo-terminal"),
    "check-hardware": (check_hardware, "ping every servo and print its model, temperature, errors, position"),
    "calibrate-joints": (calibrate_joints, "record the joint offsets with the claw held at the reference pose"),
    "calibrate-camera": (calibrate_camera, "camera intrinsics from board views (a folder, or live); YAML + report"),
    "print-board": (print_board, "write a calibration board to print (PDF/PNG) at its true size in mm"),
    "locate-camera": (locate_camera, "camera pose relative to the D'Claw base from a board at a known pose"),
}


def _run_dir(cfg: DictConfig, command: str) -> pathlib.Path:
    if cfg.out_dir:
        path = pathlib.Path(str(cfg.out_dir))
    else:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        path = pathlib.Path("runs") / command / stamp
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of `slac-robot`; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    listing = "\n".join(f"  {name:<18}{doc}" for name, (_, doc) in COMMANDS.items())
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(commands=listing))
        return 0 if argv else 2
    command, overrides = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"slac-robot: unknown command {command!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    print_config = "--cfg" in overrides
    overrides = [o for o in overrides if o != "--cfg"]
    try:
        cfg = load_config(command, overrides)
        if print_config:
            print(OmegaConf.to_yaml(cfg))
            return 0
        handler = COMMANDS[command][0]
        # A resumed run starts from its own saved config: train needs the command line as typed.
        return handler(cfg, overrides) if handler is train else handler(cfg)
    except (ConfigError, RunDirectoryInUse) as error:
        # A bad value, or a run directory that another session holds: nothing was started.
        print(f"slac-robot {command}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        failed = write_failure(error)
        if failed is None:
            raise
        # A folder that cannot be made or written (the commands make the robot safe first).
        print(f"slac-robot {command}: {describe_write_failure(failed)}", file=sys.stderr)
        return 1
    except (DynamixelError, CameraError, StaleFrameError, SafetyTrip, ResetFailed) as error:
        # Hardware that is missing or failed, or a safety trip (the robot was made safe first):
        # the message names the device or the fault, and the fix.
        print(f"slac-robot {command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"slac-robot {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
