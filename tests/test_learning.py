"""SLAC must learn: a change that breaks learning fails CI.

slac_robot.runtime.learning_check: PointReach (a dot to be moved onto a goal, seen in 64x64
images), small networks and batches, ~900 updates after the initial data, about two minutes on
a 2-core CPU. SLAC reaches the goal in every evaluation episode from ~900 environment steps on
(return ~13 against the oracle's ~15 and random actions' ~-19); the test asks for clearly more
than random, not for that.
"""

from __future__ import annotations

from slac_robot.runtime.learning_check import SCHEDULE, random_policy_scores, train_point_reach


def test_slac_learns_to_reach_a_goal_from_pixels_and_clearly_beats_random(tmp_path):
    trainer, result = train_point_reach(tmp_path)
    random_return, random_success = random_policy_scores(SCHEDULE.eval_episodes)
    success = result.success_rate["all"]
    print(f"SLAC: return {result.mean_return:.1f}, success {success:.2f}, final distance "
          f"{result.final_error['all']:.3f}; random: return {random_return:.1f}, success {random_success:.2f}")
    assert trainer.agent.sac_updates == SCHEDULE.total_env_steps - SCHEDULE.initial_collection_steps + 1
    assert success >= 0.6 > random_success + 0.3
    assert result.mean_return > random_return + 15.0
