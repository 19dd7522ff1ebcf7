"""Every agent behind one trainer: SLAC and the SAC baselines (from the state, from pixels, with
DrQ's shifts) train and evaluate on the valve and on PointReach; the probe reads the state."""

from __future__ import annotations

import csv
import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from slac_robot.agent.history import PolicyHistory
from slac_robot.agent.probe import heldout_probe, probe_errors
from slac_robot.agent.replay import SequenceReplay
from slac_robot.agent.sac_baseline import SacAgent, SacConfig, random_shift
from slac_robot.agent.slac import SlacAgent, SlacConfig
from slac_robot.cli import main
from slac_robot.runtime.plots import comparison_figure, median_or_none, read_per_goal
from slac_robot.runtime.train import Schedule, Trainer
from slac_robot.tasks.point_reach import PointReachEnv

VALVE_STEPS = 10  # steps per valve episode in these tests
AGENTS = {  # the CLI's agent groups, shrunk for a CPU test
    "slac_cpu": ["agent.width=0.125", "agent.z2_dim=16", "agent.hidden=[32,32]", "schedule.initial_model_updates=3",
                 "schedule.model_batch_size=4", "schedule.sac_batch_size=8"],
    "sac_state": ["schedule.sac_batch_size=16"],
    "sac_pixels": ["agent.width=0.125", "schedule.sac_batch_size=8"],
    "sac_pixels_drq": ["agent.width=0.125", "schedule.sac_batch_size=8"],
}


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_each_agent_trains_and_evaluates_on_the_valve(agent, tmp_path):
    run = tmp_path / "run"
    assert main(["train", f"agent={agent}", *AGENTS[agent], f"out_dir={run}", "session.learner=inline", "device=cpu",
                 f"task.episode_steps={VALVE_STEPS}", "schedule.total_env_steps=60",
                 "schedule.initial_collection_steps=20", "schedule.eval_every_episodes=3",
                 "schedule.eval_episodes=2", "schedule.checkpoint_every_episodes=3"]) == 0
    state = torch.load(sorted((run / "checkpoints").glob("*.pt"))[-1], weights_only=False)
    assert state["agent"]["sac_updates"] == 60 - 20 + 1  # one update per step from the collection's end
    assert state["agent"]["model_updates"] == (3 + 41 if agent == "slac_cpu" else 0)
    with open(run / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["env_steps"]) for r in rows] == [30, 60]
    # per goal: success rate / mean final |error| / episodes (the fixed goal, both evaluation episodes)
    goal, figures = rows[-1]["per_goal"].split(":")
    assert goal == "+1.57" and figures.split("/")[2] == "2"
    # the probe of what the agent's features tell of the valve and the joints, every evaluation
    for row in rows:
        assert 0 <= float(row["valve_error_rad"]) <= np.pi and float(row["joint_pos_error_rad"]) >= 0
    if agent == "sac_state":  # its features are the state itself: read back exactly
        assert float(rows[-1]["valve_error_rad"]) < 0.01 and float(rows[-1]["joint_pos_error_rad"]) < 0.01
    # each evaluation episode's own probe errors: over its windows, so weighted by its steps they
    # make the evaluation's
    with open(run / "eval_episodes.csv", newline="") as f:
        episodes = [r for r in csv.DictReader(f) if r["env_steps"] == rows[-1]["env_steps"]]
    for name in ("valve_error_rad", "joint_pos_error_rad"):
        steps = np.array([float(r["steps"]) for r in episodes])
        per_episode = np.array([float(r[f"probe_{name}"]) for r in episodes])
        assert np.sum(steps * per_episode) / steps.sum() == pytest.approx(float(rows[-1][name]), abs=2e-4)
    assert len(list((run / "eval_replay").glob("episode_*.npz"))) == 4  # held out: not in the replay
    assert len(list((run / "replay").glob("episode_*.npz"))) == 6
    # the policy tried on three goals: one episode each, as the trainer's evaluations spread them
    assert main(["eval", f"run={run}", "task=three_goal", "episodes=3", f"out_dir={tmp_path / 'eval'}",
                 "video.view=false", f"task.episode_steps={VALVE_STEPS}"]) == 0
    with open(tmp_path / "eval" / "episodes.csv", newline="") as f:
        goals = [float(r["goal_rad"]) for r in csv.DictReader(f)]
    assert goals == pytest.approx([-np.pi / 2, 0.0, np.pi / 2])


POINT_SCHEDULE = Schedule(
    total_env_steps=160, initial_collection_steps=100, initial_model_updates=20, updates_per_step=1,
    model_batch_size=8, sac_batch_size=16, eval_every_episodes=4, eval_episodes=4,
    checkpoint_every_episodes=0, keep_checkpoints=1, log_every_steps=100,
)
POINT_AGENTS = {
    "slac": lambda dims: SlacAgent(2, dims, SlacConfig(sequence_length=4, z1_dim=8, z2_dim=16, hidden=(32, 32),
                                                       width=0.125, channels_last=False)),
    "sac_state": lambda dims: SacAgent(2, dims, SacConfig(state_keys=("position",), hidden=(32, 32))),
    "sac_pixels": lambda dims: SacAgent(2, dims, SacConfig(observation="pixels", width=0.125, hidden=(32, 32))),
    "sac_pixels_drq": lambda dims: SacAgent(2, dims, SacConfig(observation="pixels", augmentation="random_shift",
                                                               width=0.125, hidden=(32, 32))),
}


@pytest.mark.parametrize("name", sorted(POINT_AGENTS))
def test_each_agent_trains_and_evaluates_on_point_reach(name, tmp_path):
    torch.manual_seed(0)
    env, eval_env = PointReachEnv(), PointReachEnv()
    dims = {k: s.shape[0] for k, s in env.observation_space.spaces.items() if k != "image"}
    agent = POINT_AGENTS[name](dims)
    replay = SequenceReplay(tmp_path / "replay", 2, capacity_steps=1000, sequence_length=agent.sequence_length,
                            extras=dims, expected_episode_steps=env.episode_steps)
    trainer = Trainer(env, eval_env, agent, replay, POINT_SCHEDULE, tmp_path, seed=0, show_progress=False)
    trainer.train()
    assert trainer.progress.env_steps == 160 and agent.sac_updates == 61
    result = trainer.last_eval
    assert result.env_steps == 160 and 0.0 <= result.success_rate["all"] <= 1.0
    assert set(result.probe) == {"probe/position_error"}
    if name == "sac_state":
        assert result.probe["probe/position_error"] < 0.01


def test_the_probe_reads_a_linear_quantity_and_not_noise():
    rng = np.random.default_rng(0)
    angles, joints = rng.uniform(-np.pi, np.pi, 2000), rng.normal(size=(2000, 9))
    state = np.concatenate([np.cos(angles)[:, None], np.sin(angles)[:, None], joints], axis=1)
    mixed = state @ rng.normal(size=(11, 40)) + 0.01 * rng.normal(size=(2000, 40))  # a linear code of it
    noise = rng.normal(size=(2000, 40))  # features that know nothing
    targets = {"valve": state[:, :2], "joint_pos": joints}
    split = lambda x: (x[:1500], x[1500:])  # noqa: E731
    train_t, test_t = ({k: split(v)[i] for k, v in targets.items()} for i in (0, 1))
    good = probe_errors(*split(mixed)[:1], train_t, split(mixed)[1], test_t)
    bad = probe_errors(split(noise)[0], train_t, split(noise)[1], test_t)
    assert good["probe/valve_error_rad"] < 0.02 and good["probe/joint_pos_error_rad"] < 0.02
    assert bad["probe/valve_error_rad"] > 1.2 and bad["probe/joint_pos_error_rad"] > 0.6  # chance: pi/2, 0.8


def test_the_heldout_probe_scores_every_window_and_each_episode_even_one_cut_short(tmp_path):
    dims = {"joint_pos": 9, "valve": 2, "goal": 2}
    torch.manual_seed(0)
    agent = SacAgent(9, dims, SacConfig(observation="pixels", width=0.125, hidden=(16, 16)))  # features: its encoder's
    rng = np.random.default_rng(0)
    obs = lambda: {"image": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),  # noqa: E731
                   **{k: rng.normal(size=d).astype(np.float32) for k, d in dims.items()}}

    def record(replay, steps, tripped=False):
        replay.start_episode(obs())
        for t in range(steps):
            replay.add(rng.uniform(-1, 1, 9), rng.normal(), obs(), False, t == steps - 1 and not tripped)
        if tripped:  # kept up to here, as an evaluation episode that a trip ended
            assert replay.end_tripped("position_limit")

    replay = SequenceReplay(tmp_path / "replay", 9, capacity_steps=200, sequence_length=agent.sequence_length, extras=dims)
    for _ in range(5):
        record(replay, 10)
    heldout = SequenceReplay(tmp_path / "eval_replay", 9, capacity_steps=200, sequence_length=agent.sequence_length,
                             extras=dims)
    record(heldout, 10)  # an older evaluation's: outside the newest 10 + 4 + 7 steps
    for steps, tripped in [(10, False), (4, True), (7, False)]:
        record(heldout, steps, tripped)
    probe = heldout_probe(agent, replay, tmp_path / "eval_replay", 10 + 4 + 7, np.random.default_rng(0))
    assert len(probe.per_episode) == 3  # the short episode's first frame has room too
    for name, value in probe.errors.items():
        per_episode = np.array([episode[name] for episode in probe.per_episode])
        assert np.all(per_episode > 0) and len(set(per_episode)) == 3
        assert np.dot([10, 4, 7], per_episode) / 21 == pytest.approx(value)  # every window counted once


def test_random_shift_moves_each_image_whole_by_at_most_the_pad():
    images = torch.zeros(64, 3, 16, 16)
    images[:, :, 6:10, 6:10] = 1.0  # a square away from the edges
    shifted = random_shift(images, shift_px=2, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    offsets = set()
    for image in shifted:
        rows, cols = torch.nonzero(image[0], as_tuple=True)
        assert len(rows) == 16  # the square whole
        offsets.add((int(rows.min()) - 6, int(cols.min()) - 6))
    assert offsets <= {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)} and len(offsets) > 5


@pytest.mark.parametrize("observation", ["state", "pixels"])
def test_a_sac_baseline_resumes_exactly_and_publishes_what_acting_needs(observation, tmp_path):
    dims = {"joint_pos": 9, "valve": 2, "goal": 2}
    make = lambda: SacAgent(9, dims, SacConfig(observation=observation, width=0.125, hidden=(16, 16)))  # noqa: E731
    torch.manual_seed(0)
    agent = make()
    replay = SequenceReplay(tmp_path, 9, capacity_steps=200, sequence_length=agent.sequence_length, extras=dims)
    rng = np.random.default_rng(0)
    obs = lambda: {"image": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),  # noqa: E731
                   **{k: rng.normal(size=d).astype(np.float32) for k, d in dims.items()}}
    for _ in range(3):
        replay.start_episode(obs())
        for t in range(10):
            replay.add(rng.uniform(-1, 1, 9), rng.normal(), obs(), False, t == 9)
    for _ in range(3):
        agent.train_step(replay, np.random.default_rng(1), 0, 8)
    saved = io.BytesIO()  # through bytes, as a checkpoint: a loaded optimiser state shares no tensor
    torch.save(agent.state_dict(), saved)
    resumed = make()
    resumed.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=False))
    torch.manual_seed(5)  # the policy's noise
    expected = agent.train_step(replay, np.random.default_rng(2), 0, 8)
    torch.manual_seed(5)
    assert resumed.train_step(replay, np.random.default_rng(2), 0, 8) == expected
    assert all(np.isfinite(v) for v in expected.values())
    actor = make()
    actor.load_policy_state_dict(SacAgent.policy_from_state_dict(agent.state_dict()))
    history = PolicyHistory(agent.history_length, (64, 64, 3), 9, {k: dims[k] for k in agent.observation_keys})
    history.reset(obs())
    np.testing.assert_array_equal(actor.act(history, explore=False), agent.act(history, explore=False))
    assert np.all(np.abs(agent.act(history, explore=True)) <= 1)


def test_plot_results_draws_every_setting_from_the_runs_eval_csvs(tmp_path, capsys):
    assert main(["plot-results", f"root={tmp_path}"]) == 1  # nothing there yet: says so
    assert "no <setting>/<agent>_s<seed>/eval.csv" in capsys.readouterr().err
    for setting, agent, seed in [("fixed", "slac_cpu", 0), ("fixed", "slac_cpu", 1), ("fixed", "sac_state", 0),
                                 ("random", "sac_pixels", 0)]:
        run = tmp_path / setting / f"{agent}_s{seed}"
        run.mkdir(parents=True)
        rows = [f"{1000 * (i + 1)},{i},{0.1 * i},{-100 + 50 * i + seed},x" for i in range(4 + seed)]
        (run / "eval.csv").write_text("env_steps,episodes,success_rate,mean_return,per_goal\n" + "\n".join(rows) + "\n")
    assert main(["plot-results", f"root={tmp_path}"]) == 0
    assert "4 runs in 2 goal settings" in capsys.readouterr().out
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "comparison_per_goal.csv").exists()  # no run recorded its goals
    # agents=[...] draws only those (an ablation's runs kept beside the comparison's)
    assert main(["plot-results", f"root={tmp_path}", "agents=[slac_cpu]", f"out={tmp_path / 'slac.png'}"]) == 0
    assert "2 runs in 1 goal settings" in capsys.readouterr().out
    assert main(["plot-results", f"root={tmp_path}", "agents=[drqv2]"]) == 1
    assert "of agents ['drqv2']" in capsys.readouterr().err


def test_the_comparison_figure_runs_each_column_to_its_budget_with_its_goal_dotted():
    steps = np.array([1000, 2000, 3000])
    curves = {"fixed": {"slac_cpu": [(steps, np.array([0.0, 0.5, 0.9]), np.zeros(3))] * 2},
              "random": {"sac_state": [(steps, np.array([0.1, 0.2, 0.3]), np.zeros(3))]}}
    figure = comparison_figure(curves, {"fixed": 100_000, "random": 200_000}, {"fixed": 0.8})
    fixed_success, random_success, fixed_return, random_return = figure.axes  # rows: success, return
    assert fixed_return.get_xlim() == pytest.approx((0, 102_000))  # a run at 3k shows how far it is
    assert random_return.get_xlim() == pytest.approx((0, 204_000))
    goal_lines = [line for line in fixed_success.get_lines() if line.get_label() == "goal 80%"]
    assert len(goal_lines) == 1 and goal_lines[0].get_ydata()[0] == pytest.approx(0.8)
    assert not [line for line in random_success.get_lines() if line.get_label().startswith("goal")]
    mean_line = next(line for line in fixed_success.get_lines() if line.get_label() == "slac_cpu (2 seeds)")
    np.testing.assert_allclose(mean_line.get_ydata(), [0.0, 0.5, 0.9])
    plt.close(figure)


def test_a_seed_that_went_further_than_the_others_goes_on_alone_in_the_comparison_figure():
    short = (np.array([1000, 2000]), np.array([0.0, 0.4]), np.array([-100.0, 0.0]))
    long = (np.array([1000, 2000, 3000, 4000]), np.array([0.2, 0.6, 0.8, 0.9]), np.array([0.0, 100.0, 200.0, 300.0]))
    figure = comparison_figure({"fixed": {"slac_cpu": [short, long]}})
    success, mean_return = figure.axes
    mean_line = next(line for line in success.get_lines() if line.get_label() == "slac_cpu (2 seeds)")
    np.testing.assert_allclose(mean_line.get_ydata(), [0.1, 0.5])  # the mean where both seeds are
    beyond = [line for line in success.get_lines() if line is not mean_line and not line.get_label().startswith("goal")]
    assert len(beyond) == 1 and beyond[0].get_color() == mean_line.get_color()
    np.testing.assert_allclose(beyond[0].get_xdata(), [2000, 3000, 4000])  # from the last common step on
    np.testing.assert_allclose(beyond[0].get_ydata(), [0.6, 0.8, 0.9])
    return_beyond = [line for line in mean_return.get_lines() if not line.get_label().startswith("slac_cpu")]
    np.testing.assert_allclose(return_beyond[0].get_ydata(), [100.0, 200.0, 300.0])
    plt.close(figure)


def test_an_agent_has_one_colour_in_every_column_of_the_comparison_figure():
    steps = np.array([1000, 2000])
    run = (steps, np.array([0.1, 0.2]), np.zeros(2))
    # sac_state is the first agent of its column in one and the second in the other
    figure = comparison_figure({"fixed": {"sac_pixels": [run], "sac_state": [run]}, "random": {"sac_state": [run]}})
    fixed_success, random_success, _, _ = figure.axes
    colour = {ax: {line.get_label(): line.get_color() for line in ax.get_lines()} for ax in (fixed_success, random_success)}
    assert colour[fixed_success]["sac_state (1 seed)"] == colour[random_success]["sac_state (1 seed)"]
    assert colour[fixed_success]["sac_pixels (1 seed)"] != colour[fixed_success]["sac_state (1 seed)"]
    plt.close(figure)


def test_plot_results_pools_per_goal_success_over_seeds_and_bins_random_goals(tmp_path, capsys):
    header = "env_steps,episodes,success_rate,mean_return,per_goal\n"
    three = tmp_path / "three_goal"
    for seed, per_goal in enumerate(["-1.57:0.250/0.5/4;+0.00:1.000/0.1/3;+1.57:0.000/1.2/3",
                                     "-1.57:0.750/0.3/4;+0.00:0.667/0.1/3;+1.57:1.000/0.05/3"]):
        (three / f"slac_cpu_s{seed}").mkdir(parents=True)
        old = "1000,25,0,-300,-1.57:1.000/0.0/4;+0.00:1.000/0.0/3;+1.57:1.000/0.0/3"  # outside the last evaluations
        (three / f"slac_cpu_s{seed}" / "eval.csv").write_text(header + old + f"\n2000,50,0.5,0,{per_goal}\n")
    random_run = tmp_path / "random" / "sac_state_s0"
    random_run.mkdir(parents=True)  # entries without an episode count (older files) count as one episode each
    (random_run / "eval.csv").write_text(header + "1000,25,0.5,0,-1.50:1.000/0.05;-1.00:0.000/0.9;+0.40:1.000/0.02\n")
    assert main(["plot-results", f"root={tmp_path}", "per_goal.last_evaluations=1", "per_goal.bin_width_rad=1.0"]) == 0
    assert "last 1 evaluations" in capsys.readouterr().out
    rows = (tmp_path / "comparison_per_goal.csv").read_text().splitlines()
    assert rows[0] == "setting,agent,goal_low_rad,goal_high_rad,episodes,success_rate"
    # The settings in at_budget's order (the paper's: fixed, three goals, random), not the alphabet's.
    assert rows[1:4] == ["three_goal,slac_cpu,-1.57,-1.57,8,0.5",    # (1 + 3) of 8
                         "three_goal,slac_cpu,0.0,0.0,6,0.833",      # (3 + 2) of 6
                         "three_goal,slac_cpu,1.57,1.57,6,0.5"]      # (0 + 3) of 6
    assert rows[4:6] == ["random,sac_state,-2.0,-1.0,1,1.0", "random,sac_state,-1.0,0.0,1,0.0"]
    assert rows[6:] == ["random,sac_state,0.0,1.0,1,1.0"]  # no row for an empty bin
    assert (tmp_path / "comparison_per_goal.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot-results", f"root={tmp_path}", "per_goal.last_evaluations=0"]) == 2
    assert "per_goal.last_evaluations" in capsys.readouterr().err
    assert not (tmp_path / "comparison_by_start_error.csv").exists()  # no run wrote eval_episodes.csv
    # A run resumed across the change: its older entries count as many episodes as its newer ones.
    straddling = tmp_path / "straddling.csv"
    straddling.write_text(header + "1000,25,0.3,0,+1.57:0.300/0.5\n2000,50,0.5,0,+1.57:0.500/0.4/10\n")
    assert read_per_goal(straddling, last_evaluations=2) == {1.57: (8, 20)}
    assert read_per_goal(straddling, last_evaluations=1) == {1.57: (5, 10)}


def test_plot_results_tabulates_success_by_the_valves_start_error_over_the_last_evaluations(tmp_path, capsys):
    header = "env_steps,episodes,success_rate,mean_return,per_goal\n"
    episodes_header = "env_steps,seed,goal,start_error_rad,final_error_rad,success,return,steps,trip\n"
    # seed 0's rows hold the probe's valve error per episode; seed 1's (a learner process) none
    for seed, outcomes in enumerate([[(0.2, 1, 0.1), (1.2, 1, 0.3), (-2.9, 0, 0.5)],
                                     [(0.4, 1, ""), (1.0, 0, ""), (-0.1, 1, "")]]):
        run = tmp_path / "fixed" / f"slac_cpu_s{seed}"
        run.mkdir(parents=True)
        (run / "eval.csv").write_text(header + "1000,25,0,-300,+1.57:0.000/2.0/3\n2000,50,0.6,0,+1.57:0.667/0.5/3\n")
        old = "".join(f"1000,{i},+1.57,0.1,2.0,0,-300,40,,9\n" for i in range(3))  # outside the last evaluation
        new = "".join(f"2000,{i},+1.57,{start},0.05,{ok},100,40,,{probe}\n"
                      for i, (start, ok, probe) in enumerate(outcomes))
        (run / "eval_episodes.csv").write_text(episodes_header.rstrip() + ",probe_valve_error_rad\n" + old + new)
    point_reach = tmp_path / "point_reach" / "sac_state_s0"  # no valve: no start error to tabulate
    point_reach.mkdir(parents=True)
    (point_reach / "eval.csv").write_text(header + "1000,25,1,0,all:1.000/0.0/1\n")
    (point_reach / "eval_episodes.csv").write_text(
        "env_steps,seed,goal,start_distance,final_distance,success,return,steps,trip\n1000,0,all,0.5,0.01,1,3,20,\n")
    assert main(["plot-results", f"root={tmp_path}", "per_goal.last_evaluations=1",
                 "by_start_error.bin_width_rad=1.0"]) == 0
    assert "by the valve's start error" in capsys.readouterr().out
    rows = (tmp_path / "comparison_by_start_error.csv").read_text().splitlines()
    assert rows == ["setting,agent,start_error_low_rad,start_error_high_rad,episodes,success_rate,probe_valve_error_rad",
                    "fixed,slac_cpu,-3.0,-2.0,1,0.0,0.5",    # -2.9: the other way round
                    "fixed,slac_cpu,-1.0,0.0,1,1.0,",        # -0.1: no probe recorded
                    "fixed,slac_cpu,0.0,1.0,2,1.0,0.1",      # 0.2 and 0.4; the probe of seed 0's only
                    "fixed,slac_cpu,1.0,2.0,2,0.5,0.3"]      # 1.2 of seed 0 yes, 1.0 of seed 1 no
    assert (tmp_path / "comparison_by_start_error.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot-results", f"root={tmp_path}", "by_start_error.bin_width_rad=0"]) == 2
    assert "by_start_error.bin_width_rad" in capsys.readouterr().err


def test_plot_results_shows_where_the_valve_stood_when_evaluations_failed(tmp_path, capsys):
    header = "env_steps,episodes,success_rate,mean_return,per_goal\n"
    episodes_header = "env_steps,seed,goal,start_error_rad,final_error_rad,success,return,steps,trip\n"
    # (final error, success) of the last evaluation: seed 0 fails twice at the look-alike 2pi/3
    # (either side) and once near the goal; seed 1 once at pi; successes never count
    for seed, outcomes in enumerate([[(2.0, 0), (-2.2, 0), (0.3, 0), (0.01, 1)], [(-3.1416, 0), (0.05, 1)]]):
        run = tmp_path / "fixed" / f"slac_cpu_s{seed}"
        run.mkdir(parents=True)
        (run / "eval.csv").write_text(header + "1000,25,0,-300,+1.57:0.000/2.0/4\n2000,50,0.2,0,+1.57:0.200/0.5/4\n")
        old = "1000,0,+1.57,0.1,1.0,0,-300,40,\n"  # a failure before the last evaluation: left out
        new = "".join(f"2000,{i},+1.57,1.0,{end},{ok},0,40,\n" for i, (end, ok) in enumerate(outcomes))
        (run / "eval_episodes.csv").write_text(episodes_header + old + new)
    assert main(["plot-results", f"root={tmp_path}", "by_final_error.last_evaluations=1"]) == 0
    assert "where the valve stood when evaluations failed" in capsys.readouterr().out
    rows = (tmp_path / "comparison_failures_by_final_error.csv").read_text().splitlines()
    # 40-degree bins centred on 0, 2pi/9, 4pi/9, 2pi/3, 8pi/9, the last closed at pi
    assert rows == ["setting,agent,final_error_low_rad,final_error_high_rad,failed_episodes,share_of_failures",
                    "fixed,slac_cpu,0.0,0.349,1,0.25",     # 0.3
                    "fixed,slac_cpu,0.349,1.047,0,0.0",
                    "fixed,slac_cpu,1.047,1.745,0,0.0",
                    "fixed,slac_cpu,1.745,2.443,2,0.5",    # 2.0 and 2.2: the look-alike
                    "fixed,slac_cpu,2.443,3.142,1,0.25"]   # pi
    assert (tmp_path / "comparison_failures_by_final_error.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot-results", f"root={tmp_path}", "by_final_error.bin_width_rad=-1"]) == 2
    assert "by_final_error.bin_width_rad" in capsys.readouterr().err


def test_plot_results_reads_each_run_at_its_step_budget_and_the_median_over_seeds(tmp_path, capsys):
    header = "env_steps,episodes,success_rate,mean_return,per_goal\n"
    curves = {0: [0.2, 0.8, 0.6, 0.9], 1: [0.1, 0.3, 0.9, 0.7], 2: [0.0, 0.1, 0.2]}  # seed 2: short of the budget
    for seed, rates in curves.items():
        run = tmp_path / "fixed" / f"slac_cpu_s{seed}"
        run.mkdir(parents=True)
        rows = "".join(f"{1000 * (i + 1)},{25 * (i + 1)},{rate},0,x\n" for i, rate in enumerate(rates))
        (run / "eval.csv").write_text(header + rows + "5000,125,0.0,0,x\n")  # past the budget: not counted
    other = tmp_path / "point_reach" / "sac_state_s0"  # a setting without a budget: left out
    other.mkdir(parents=True)
    (other / "eval.csv").write_text(header + "1000,25,1,0,x\n")
    budget = ["at_budget.env_steps={fixed: 4000}", "at_budget.target_success={fixed: 0.8}", "per_goal.last_evaluations=2"]
    assert main(["plot-results", f"root={tmp_path}", *budget]) == 0
    out = capsys.readouterr().out
    assert "fixed slac_cpu: median success 0.70 at <= 4000 steps (target 0.8; every seed at >= 3000 steps)" in out
    rows = (tmp_path / "comparison_at_budget.csv").read_text().splitlines()
    assert rows == ["setting,agent,seed,budget_env_steps,target_success,last_env_steps,success_at_budget,"
                    "mean_last,first_env_steps_at_target",
                    "fixed,slac_cpu,0,4000,0.8,4000,0.9,0.75,2000",
                    "fixed,slac_cpu,1,4000,0.8,4000,0.7,0.8,3000",
                    "fixed,slac_cpu,2,4000,0.8,3000,0.2,0.15,",           # never at 0.8
                    "fixed,slac_cpu,median,4000,0.8,3000,0.7,0.75,3000"]
    for bad, must_name in [("at_budget.target_success={fixed: 1.5}", "at_budget.target_success.fixed"),
                           ("at_budget.env_steps={fixed: 0}", "at_budget.env_steps.fixed"),
                           ("+at_budget.env_steps.point_reach=1000", "must name the same goal settings")]:
        assert main(["plot-results", f"root={tmp_path}", bad]) == 2
        assert must_name in capsys.readouterr().err


def test_the_median_step_of_reaching_a_target_counts_a_run_that_never_did_as_the_latest():
    assert median_or_none([3000, None, 1000]) == 3000
    assert median_or_none([None, None, 1000]) is None
    assert median_or_none([1000, 2000]) == 1500
    assert median_or_none([1000, None]) is None


def test_plot_results_tabulates_the_training_episodes_success_by_start_error_per_block_of_steps(tmp_path, capsys):
    header = "env_steps,episodes,success_rate,mean_return,per_goal\n"
    train_header = "episode,env_steps,return,success,start_error_rad,final_error_rad,policy_sac_updates,tripped\n"
    episodes = {0: [(40, -2.5, False), (80, 0.3, True), (120, 2.0, False)],  # (env_steps at its end, start, success)
                1: [(40, 0.5, False), (80, -2.2, True), (120, 2.4, True)]}
    for seed, rows in episodes.items():
        run = tmp_path / "fixed" / f"slac_cpu_s{seed}"
        run.mkdir(parents=True)
        (run / "eval.csv").write_text(header + "120,3,0.5,0,+1.57:0.500/0.5/2\n")
        (run / "train_episodes.csv").write_text(train_header + "".join(
            f"{i + 1},{steps},0,{ok},{start},0.0,0,\n" for i, (steps, start, ok) in enumerate(rows)))
    older = tmp_path / "fixed" / "sac_state_s0"  # rows from before the column: no row in the table
    older.mkdir(parents=True)
    (older / "eval.csv").write_text(header + "120,3,1,0,+1.57:1.000/0.0/2\n")
    (older / "train_episodes.csv").write_text("episode,env_steps,return,success\n1,40,0,True\n")
    assert main(["plot-results", f"root={tmp_path}", "train_by_start_error.bin_width_rad=2.0",
                 "train_by_start_error.block_env_steps=100", "train_by_start_error.min_episodes=1"]) == 0
    assert "the training episodes' success by the valve's start error, per 100 steps" in capsys.readouterr().out
    rows = (tmp_path / "comparison_train_by_start_error.csv").read_text().splitlines()
    assert rows == ["setting,agent,env_steps_low,env_steps_high,start_error_low_rad,start_error_high_rad,episodes,"
                    "success_rate",
                    "fixed,slac_cpu,0,100,-4.0,-2.0,2,0.5",   # -2.5 (seed 0, no), -2.2 (seed 1, yes)
                    "fixed,slac_cpu,0,100,0.0,2.0,2,0.5",     # 0.3 yes, 0.5 no
                    "fixed,slac_cpu,100,200,2.0,4.0,2,0.5"]   # 2.0 no, 2.4 yes: the block of steps 100-199
    assert (tmp_path / "comparison_train_by_start_error.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot-results", f"root={tmp_path}", "train_by_start_error.block_env_steps=0"]) == 2
    assert "train_by_start_error.block_env_steps" in capsys.readouterr().err
    assert main(["plot-results", f"root={tmp_path}", "train_by_start_error.bin_width_rad=2.0",
                 "train_by_start_error.block_env_steps=100", "train_by_start_error.min_episodes=2"]) == 0
    rows = (tmp_path / "comparison_train_by_start_error.csv").read_text().splitlines()
    assert rows[1:] == ["fixed,slac_cpu,0,100,-4.0,-2.0,2,0.5", "fixed,slac_cpu,0,100,0.0,2.0,2,0.5",
                        "fixed,slac_cpu,100,200,2.0,4.0,2,0.5"]  # every cell holds 2
    assert main(["plot-results", f"root={tmp_path}", f"out={tmp_path / 'few.png'}", "train_by_start_error.min_episodes=3",
                 "train_by_start_error.bin_width_rad=2.0", "train_by_start_error.block_env_steps=100"]) == 0
    assert not (tmp_path / "few_train_by_start_error.csv").exists()  # no cell holds 3: no table
