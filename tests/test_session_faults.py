"""Faults in a training session: the Trainer (the actor, updates inline) runs whole episodes into
its replay folder while a fault is injected mid-episode, through the bus emulator, the simulated
camera or the policy's weights. Each test checks what the session does after the environment
tripped: the trip in <run>/safety_events.jsonl, the robot left safe, the tripped episode not
recorded while every finished one is (the replay loads, nothing goes to corrupt/), the counters,
the inline checkpoint still loadable, and the after-trip policy (go on after a reset, ask a
person, halt). The env-level trips are tests/test_safety_trips.py; real processes (a learner
crash, the actor SIGKILLed and resumed) are tests/test_session.py.

The session is built as `slac-robot train session.learner=inline` builds it (cli.train), with
tiny networks. Faults are triggered by wrapping the env instance's `step` and `reset`: the
wrapper injects the fault at a given (episode, step) and then calls the real method; nothing
under test is replaced. Episode numbers are the env's: resets begun, 1 first (as logged).
"""

from __future__ import annotations

import csv
import pathlib
from typing import Callable

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from slac_robot.agent.checkpoint import load_latest_checkpoint
from slac_robot.agent.replay import SequenceReplay
from slac_robot.backends import make_agent, make_env, make_replay
from slac_robot.config import load_config
from slac_robot.runtime.train import Schedule, SessionHalted, Trainer, TripPolicy
from slac_robot.safety import EventLog, ResetFailed, faults, read_events
from tests.test_safety_trips import emulated_torque_is_off, sim_torque_is_off

EPISODE_STEPS = 10
EPISODES = 3
SESSION = [
    "session.learner=inline",
    "device=cpu",
    "agent.width=0.125",
    "agent.hidden=[32,32]",
    "agent.z2_dim=16",
    "task=random",  # a goal of its own each episode: which episodes the replay holds can be told apart
    f"task.episode_steps={EPISODE_STEPS}",
    f"schedule.total_env_steps={EPISODES * EPISODE_STEPS}",
    # The policy acts from the start, and nothing is trained: these tests are about the session.
    # (On backend=emulated an update between two steps longer than backend.watchdog_s would also
    # fire the servos' Bus Watchdog: a `watchdog` trip, tests/test_watchdog_recovery.py.)
    "schedule.initial_collection_steps=0",
    "schedule.initial_model_updates=0",
    "schedule.updates_per_step=0",
    "schedule.model_batch_size=4",
    "schedule.sac_batch_size=8",
    "schedule.eval_every_episodes=0",
    "schedule.checkpoint_every_episodes=1",
    "schedule.log_every_steps=1000",
]


class Session:
    """A Trainer built as cli.train builds it for session.learner=inline, and the fault triggers.

    at_step[(episode, step)] / at_reset[episode]: called once, just before the env's own step
    (the step'th of that episode, from 0) or reset (that episode's). The goal of every reset is
    kept in `goals` (by episode), and in `robot_safe_at_reset` whether the robot was in its safe
    state (every servo's torque off) when the session came to that reset."""

    def __init__(self, run_dir: pathlib.Path, overrides: tuple[str, ...], ask_person: Callable[[str], bool] | None):
        self.run_dir = run_dir
        cfg = load_config("train", [*SESSION, f"out_dir={run_dir}", *overrides])
        self.cfg = cfg
        schedule = Schedule(**{k: int(v) for k, v in cfg.schedule.items()})
        env = make_env(cfg)
        self.env = env
        try:
            env.event_log = EventLog(run_dir / "safety_events.jsonl")
            torch.manual_seed(cfg.seed)
            agent = make_agent(cfg.agent, env, torch.device("cpu"))
            replay = make_replay(cfg.replay, run_dir / "replay", env, agent.cfg.sequence_length, env.task.episode_steps)
            OmegaConf.save(cfg, run_dir / "config.yaml")
            session = cfg.session
            self.asked: list[str] = []
            self._ask_person = ask_person
            ask = None if ask_person is None else self._ask
            env.scripted_reset.ask_person = ask  # a reset that failed its attempts asks, too
            policy = TripPolicy(session.after_trip, session.max_trips_in_a_row, ask)
            self.trainer = Trainer(env, env, agent, replay, schedule, run_dir, seed=cfg.seed,
                                   video_scale=cfg.video.scale, show_progress=False, trip_policy=policy)
        except BaseException:
            env.close()
            raise
        self.at_step: dict[tuple[int, int], Callable[[], None]] = {}
        self.at_reset: dict[int, Callable[[], None]] = {}
        self.goals: dict[int, float] = {}
        self.robot_safe_at_reset: dict[int, bool] = {}
        self.robot_safe_when_asked: list[bool] = []
        self.episode, self.step = 0, 0
        self.closed = False
        real_step, real_reset = env.step, env.reset

        def step(action):
            if trigger := self.at_step.pop((self.episode, self.step), None):
                trigger()
            self.step += 1
            return real_step(action)

        def reset(**kwargs):
            self.episode, self.step = self.episode + 1, 0
            self.robot_safe_at_reset[self.episode] = self.robot_is_safe()
            if trigger := self.at_reset.pop(self.episode, None):
                trigger()
            try:
                return real_reset(**kwargs)
            finally:
                self.goals[self.episode] = env.goal_rad

        env.step, env.reset = step, reset

    def _ask(self, message: str) -> bool:
        self.asked.append(message)
        self.robot_safe_when_asked.append(self.robot_is_safe())
        return self._ask_person(message)

    @property
    def emulator(self):
        return self.env.clock.emulator

    def robot_is_safe(self) -> bool:
        return emulated_torque_is_off(self.env) if self.cfg.backend.name == "emulated" else sim_torque_is_off(self.env)

    def train(self) -> None:
        self.trainer.train()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.env.close()

    def events(self, kind: str | None = None) -> list[dict]:
        return [e for e in read_events(self.run_dir / "safety_events.jsonl") if kind is None or e["kind"] == kind]

    def assert_recorded(self, finished: list[int], tripped: list[tuple[int, int, str]] = ()) -> SequenceReplay:
        """The replay holds exactly the episodes `finished` (by episode number), whole, and what
        the episodes cut short by a trip had collected (`tripped`: episode number, whole steps,
        fault kind), in order, those marked as tripped and truncated; the counters,
        train_episodes.csv and the newest checkpoint agree."""
        expected = sorted([(episode, EPISODE_STEPS, "") for episode in finished] + list(tripped))
        folder = self.run_dir / "replay"
        files = sorted(folder.glob("episode_*.npz"))
        assert [p.name for p in files] == [f"episode_{i:08d}_{steps}.npz" for i, (_, steps, _) in enumerate(expected)]
        assert sorted(p.name for p in folder.iterdir()) == [p.name for p in files]  # no temporary or corrupt/
        replay = SequenceReplay(folder, action_dim=9, capacity_steps=10_000, sequence_length=8,
                                extras={"goal": 2}, expected_episode_steps=EPISODE_STEPS)
        assert replay.total_episodes == replay.num_episodes == len(expected)
        assert not (folder / "corrupt").exists()
        for path, (episode, _, kind) in zip(files, expected):
            data = np.load(path)
            goal = self.goals[episode]
            np.testing.assert_allclose(data["obs_goal"][0], [np.cos(goal), np.sin(goal)], atol=1e-6)
            assert np.all(np.isfinite(data["action"]))
            assert str(data["tripped"]) == kind and bool(data["truncated"]) and not bool(data["terminated"])
        steps = np.cumsum([steps for _, steps, _ in expected]).tolist()
        progress = self.trainer.progress
        assert (progress.episodes, progress.env_steps) == (len(expected), steps[-1] if steps else 0)
        with open(self.run_dir / "train_episodes.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["env_steps"]) for r in rows] == steps
        assert [r["tripped"] for r in rows] == [kind for _, _, kind in expected]
        # every trip counts, at resets too; a row gives the trips so far per 1,000 recorded steps
        assert progress.trips == len(self.events("trip"))
        for row, total in zip(rows, steps):
            trips_so_far = float(row["trips_per_1000_steps"]) * total / 1000
            assert abs(trips_so_far - round(trips_so_far)) < 0.01 and round(trips_so_far) >= bool(row["tripped"])
        _, state = load_latest_checkpoint(self.run_dir / "checkpoints")
        assert state["progress"]["episodes"] == len(expected)
        assert state["progress"]["env_steps"] == (steps[-1] if steps else 0)
        return replay

    def assert_trip(self, kind: str, episode: int, step: int) -> dict:
        """Exactly one trip was logged, of this kind, at this episode and step (steps taken)."""
        (trip,) = self.events("trip")
        assert trip["fault"]["kind"] == kind
        assert (trip["episode"], trip["step"]) == (episode, step)
        return trip


@pytest.fixture
def make_session(tmp_path):
    """Factory: make_session(*overrides, ask_person=None) -> a Session; its env closed at teardown."""
    built: list[Session] = []

    def make(*overrides: str, ask_person: Callable[[str], bool] | None = None) -> Session:
        run_dir = tmp_path / f"run{len(built)}"
        run_dir.mkdir()
        built.append(Session(run_dir, overrides, ask_person))
        return built[-1]

    yield make
    for session in built:
        session.close()


# -- faults that need a person: a motor error, overheating, an unplugged port -------------------
def test_a_motor_error_mid_episode_halts_the_session_when_no_one_can_be_asked(make_session):
    session = make_session("backend=emulated")
    session.at_step[(2, 4)] = lambda: session.emulator.hardware_error(11, 0x20)  # overload, FF middle
    with pytest.raises(SessionHalted, match="hardware_error needs a person") as halted:
        session.train()
    assert "motor 11" in str(halted.value)
    assert session.robot_is_safe()  # every servo's torque off, as the trip left it
    trip = session.assert_trip(faults.HARDWARE_ERROR, episode=2, step=5)
    assert "motor 11" in trip["fault"]["message"]
    # The motor in error cannot be read, so it is not held: torque off at once, and that worked.
    assert [f.split(":")[0] for f in trip["stop_failures"]] == ["hold"]
    session.assert_recorded(finished=[1], tripped=[(2, 4, faults.HARDWARE_ERROR)])  # the steps before the fault


def test_a_motor_error_fixed_by_a_person_the_session_goes_on_and_finishes(make_session):
    def reboot_the_motor(message: str) -> bool:
        session.env.robot.reboot(11)  # what a person does: reboot it (clears the latched error)
        return True

    session = make_session("backend=emulated", ask_person=reboot_the_motor)
    session.at_step[(2, 4)] = lambda: session.emulator.hardware_error(11, 0x20)
    session.train()
    (message,) = session.asked
    assert "hardware_error needs a person" in message and "motor 11" in message
    assert session.robot_safe_when_asked == [True]
    session.assert_trip(faults.HARDWARE_ERROR, episode=2, step=5)
    session.assert_recorded(finished=[1, 3, 4], tripped=[(2, 4, faults.HARDWARE_ERROR)])
    assert session.emulator.motors[11].hardware_error == 0


def test_overheating_asks_a_person_and_the_session_goes_on_once_the_motor_cooled(make_session):
    def let_it_cool(message: str) -> bool:
        session.emulator.overheat(21, 40)
        return True

    session = make_session("backend=emulated", ask_person=let_it_cool)
    session.at_step[(2, 3)] = lambda: session.emulator.overheat(21, 75)  # above our 70 C, below the servo's 80 C
    session.train()
    (message,) = session.asked
    assert "overheating needs a person" in message and "MF middle" in message
    assert session.robot_safe_when_asked == [True]
    trip = session.events("trip")[0]
    assert trip["fault"]["kind"] == faults.OVERHEATING and trip["fault"]["joints"] == [4]
    assert trip["episode"] == 2 and 3 < trip["step"] <= EPISODE_STEPS  # seen at the next health read
    assert len(session.events("trip")) == 1
    session.assert_recorded(finished=[1, 3, 4], tripped=[(2, trip["step"] - 1, faults.OVERHEATING)])


def test_overheating_halts_the_session_when_no_one_can_be_asked(make_session):
    session = make_session("backend=emulated")
    session.at_step[(2, 3)] = lambda: session.emulator.overheat(21, 75)
    with pytest.raises(SessionHalted, match="overheating needs a person"):
        session.train()
    assert session.robot_is_safe()
    (trip,) = session.events("trip")
    assert trip["fault"]["kind"] == faults.OVERHEATING and trip["episode"] == 2
    session.assert_recorded(finished=[1], tripped=[(2, trip["step"] - 1, faults.OVERHEATING)])


def test_an_unplugged_port_halts_the_session_and_the_replay_stays_whole(make_session):
    # No checkpoint falls due before the halt: the one assert_recorded loads is written by the halt.
    session = make_session("backend=emulated", "schedule.checkpoint_every_episodes=10")
    session.at_step[(2, 6)] = session.emulator.disconnect
    with pytest.warns(RuntimeWarning, match="torque off"):  # nothing answers: the servos' watchdogs stop them
        with pytest.raises(SessionHalted, match="port_lost needs a person"):
            session.train()
        trip = session.assert_trip(faults.PORT_LOST, episode=2, step=7)
        assert any("torque off" in failure for failure in trip["stop_failures"])
        session.assert_recorded(finished=[1], tripped=[(2, 6, faults.PORT_LOST)])
        session.close()  # its warning: no servo answered the torque off


@pytest.mark.parametrize("someone_there", [False, True])
def test_a_finger_jammed_mid_episode_fails_the_next_reset_which_asks_a_person(make_session, someone_there):
    """Nothing crosses a limit while the finger is jammed (the episode finishes and is recorded);
    the reset after it cannot bring the finger back: after its attempts it asks a person (the
    scripted reset's ask_person, the terminal's in cli.train), or ends the session."""

    def free_the_finger(message: str) -> bool:
        session.emulator.stick(21, stuck=False)
        return True

    # No checkpoint falls due before the end: the one assert_recorded loads is written at the end.
    session = make_session("backend=emulated", "schedule.checkpoint_every_episodes=10",
                           ask_person=free_the_finger if someone_there else None)
    session.at_step[(2, 4)] = lambda: session.emulator.stick(21)  # MF middle
    if someone_there:
        session.train()
        (message,) = session.asked
        assert "MF middle (joint 4)" in message
        assert session.events() == []  # no trip, and the reset succeeded after the person
        session.assert_recorded(finished=[1, 2, 3])
    else:
        with pytest.raises(ResetFailed, match=r"MF middle \(joint 4\)"):
            session.train()
        assert session.robot_is_safe()
        (event,) = session.events()
        assert (event["kind"], event["episode"]) == ("reset_failed", 3)
        assert event["attempts"] == session.env.scripted_reset.attempts
        session.assert_recorded(finished=[1, 2])


# -- faults the session gets over by itself (after_trip=reset) -----------------------------------
def test_status_packets_lost_beyond_the_retries_trip_and_the_session_goes_on(make_session):
    session = make_session("backend=emulated", "session.after_trip=reset")

    def drop_status_packets():
        session.emulator.drop_status(count=session.env.robot.bus.retries + 1, motor_id=22)

    session.at_step[(2, 4)] = drop_status_packets
    session.train()
    assert session.asked == []
    trip = session.assert_trip(faults.BUS_ERROR, episode=2, step=5)
    assert "[22]" in trip["fault"]["message"] and trip["stop_failures"] == []
    assert session.robot_safe_at_reset[3]  # the trip left every servo's torque off
    session.assert_recorded(finished=[1, 3, 4], tripped=[(2, 4, faults.BUS_ERROR)])


def test_a_camera_frozen_mid_episode_trips_and_the_session_goes_on_once_it_runs_again(make_session):
    session = make_session("backend=emulated")
    camera = session.env.camera
    session.at_step[(2, 4)] = camera.freeze
    session.at_reset[3] = lambda: camera.freeze(False)
    session.train()
    assert session.asked == []
    trip = session.assert_trip(faults.STALE_FRAME, episode=2, step=5)
    assert "again" in trip["fault"]["message"]  # the same frame: the monitor saw the camera freeze
    assert session.robot_safe_at_reset[3]
    session.assert_recorded(finished=[1, 3, 4], tripped=[(2, 4, faults.STALE_FRAME)])


def test_a_trip_during_an_evaluation_fails_that_episode_and_the_session_goes_on(make_session):
    session = make_session("schedule.eval_every_episodes=2", "schedule.eval_episodes=2")
    camera = session.env.camera
    # Episodes 1, 2 train; 3 and 4 are the first evaluation's (training and evaluation share the env).
    session.at_step[(3, 4)] = camera.freeze
    session.at_reset[4] = lambda: camera.freeze(False)
    session.train()
    session.assert_trip(faults.STALE_FRAME, episode=3, step=5)
    assert session.asked == [] and session.robot_safe_at_reset[4]
    with open(session.run_dir / "eval.csv", newline="") as f:
        first = next(csv.DictReader(f))
    assert int(first["env_steps"]) == 2 * EPISODE_STEPS and float(first["success_rate"]) <= 0.5
    kept = sorted((session.run_dir / "eval_replay").glob("episode_*.npz"))
    assert str(np.load(kept[0])["tripped"]) == faults.STALE_FRAME and len(np.load(kept[0])["action"]) == 4
    with open(session.run_dir / "eval_episodes.csv", newline="") as f:
        tripped, whole = list(csv.DictReader(f))[:2]  # the first evaluation's two episodes
    assert (tripped["seed"], tripped["trip"], tripped["steps"], tripped["success"]) == ("0", faults.STALE_FRAME, "4", "0")
    assert (whole["seed"], whole["trip"], whole["steps"]) == ("1", "", str(EPISODE_STEPS))
    assert session.trainer.progress.trips == 1
    session.assert_recorded(finished=[1, 2, 5])  # the training episodes, all whole


@pytest.mark.parametrize("someone_there", [False, True])
def test_a_camera_frozen_for_good_trips_every_reset_until_a_person_is_asked(make_session, someone_there):
    def restart_the_camera(message: str) -> bool:
        session.env.camera.freeze(False)
        return True

    session = make_session("session.max_trips_in_a_row=2", ask_person=restart_the_camera if someone_there else None)
    session.at_step[(2, 4)] = session.env.camera.freeze
    if someone_there:
        session.train()
    else:
        with pytest.raises(SessionHalted, match=r"3 trips in a row \(session.max_trips_in_a_row=2\)"):
            session.train()
        assert session.robot_is_safe()
    trips = session.events("trip")
    # Mid-episode, then at the end of each reset (the frame it checks is stale).
    assert [(t["episode"], t["step"]) for t in trips] == [(2, 5), (3, 0), (4, 0)]
    assert all(t["fault"]["kind"] == faults.STALE_FRAME for t in trips)
    assert session.robot_safe_at_reset[3] and session.robot_safe_at_reset[4]
    if someone_there:
        (message,) = session.asked
        assert "3 trips in a row" in message
        session.assert_recorded(finished=[1, 5, 6], tripped=[(2, 4, faults.STALE_FRAME)])
    else:
        session.assert_recorded(finished=[1], tripped=[(2, 4, faults.STALE_FRAME)])


# -- a diverged policy -------------------------------------------------------------------------
def last_layer(actor: torch.nn.Module) -> torch.nn.Linear:
    return [m for m in actor.modules() if isinstance(m, torch.nn.Linear)][-1]


def nan_switch(actor: torch.nn.Module):
    """(diverge, restore): fill the actor's last layer with NaN, and put its weights back."""
    layer = last_layer(actor)
    good = layer.weight.detach().clone()

    def diverge():
        with torch.no_grad():
            layer.weight.fill_(float("nan"))

    def restore():
        with torch.no_grad():
            layer.weight.copy_(good)

    return diverge, restore


def test_nan_actions_are_refused_then_trip_and_the_session_goes_on(make_session):
    # No checkpoint between episodes: one due while the weights are NaN would be refused, which
    # ends the session (NonFiniteWeights, tests/test_run_directory.py); the last one comes after
    # the weights are put back.
    session = make_session("schedule.checkpoint_every_episodes=0")
    diverge, restore = nan_switch(session.trainer.agent.actor)

    session.at_reset[2] = diverge  # every action of episode 2 is NaN
    session.at_reset[3] = restore
    session.train()
    limit = session.env.monitor.limits.max_refused_actions_in_a_row
    refused = session.events("refused_action")
    assert [(e["episode"], e["step"]) for e in refused] == [(2, i) for i in range(limit)]
    assert all(np.isnan(e["action"]).all() for e in refused)
    session.assert_trip(faults.REFUSED_ACTIONS, episode=2, step=limit)
    assert session.asked == [] and session.robot_safe_at_reset[3]
    # the steps before the trip, every refused action recorded as the hold it became
    session.assert_recorded(finished=[1, 3, 4], tripped=[(2, limit - 1, faults.REFUSED_ACTIONS)])


def test_a_single_nan_action_is_held_and_recorded_as_the_hold(make_session):
    """One non-finite action late in an episode: the claw holds, the episode goes on to its end,
    and what the replay (and the policy's history) records is the hold, never the NaN."""
    session = make_session()
    diverge, restore = nan_switch(session.trainer.agent.actor)

    # The action of step 8 is computed after step 7 and before step 8: NaN for that one.
    last = EPISODE_STEPS - 1
    session.at_step[(2, last - 2)] = diverge
    session.at_step[(2, last - 1)] = restore
    session.train()
    (refused,) = session.events("refused_action")
    assert (refused["episode"], refused["step"]) == (2, last - 1)
    assert session.events("trip") == []
    session.assert_recorded(finished=[1, 2, 3])  # episode 2 among them, every action finite
    recorded = np.load(session.run_dir / "replay" / f"episode_00000001_{EPISODE_STEPS}.npz")["action"]
    hold = session.env.action_filter.to_action(np.asarray(refused["held_rad"]))
    np.testing.assert_allclose(recorded[last - 1], hold, atol=1e-6)
