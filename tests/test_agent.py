"""SLAC's latent model and SAC update: the maths, the data flow and the fast paths."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from slac_robot.agent.slac import SlacAgent, SlacConfig
from slac_robot.agent.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from slac_robot.agent.history import PolicyHistory
from slac_robot.agent.networks import gaussian_kl, gaussian_log_prob_sum
from slac_robot.agent.noise import drawing_from

SMALL = dict(z1_dim=8, z2_dim=16, hidden=(32, 32), width=0.125)
ACTION_DIM, GOAL_DIM = 3, 2


def make_agent(seed: int = 0, **overrides) -> SlacAgent:
    torch.manual_seed(seed)
    return SlacAgent(ACTION_DIM, {"goal": GOAL_DIM}, SlacConfig(**{**SMALL, **overrides}))


def make_sample(batch: int, seed: int = 0, steps: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "images": rng.integers(0, 256, (batch, steps + 1, 64, 64, 3), dtype=np.uint8),
        "actions": rng.uniform(-1, 1, (batch, steps, ACTION_DIM)).astype(np.float32),
        "rewards": rng.normal(size=(batch, steps)).astype(np.float32),
        "terminated": rng.random((batch, steps)) < 0.1,
        "goal": rng.normal(size=(batch, steps + 1, GOAL_DIM)).astype(np.float32),
        "valid": np.ones((batch, steps + 1), dtype=bool),
    }


def parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_analytic_kl_matches_a_monte_carlo_estimate():
    torch.manual_seed(0)
    mean_q, std_q = torch.randn(4), torch.rand(4) + 0.3
    mean_p, std_p = torch.randn(4), torch.rand(4) + 0.3
    q = torch.distributions.Normal(mean_q, std_q)
    p = torch.distributions.Normal(mean_p, std_p)
    x = q.sample((400_000,))
    monte_carlo = (q.log_prob(x) - p.log_prob(x)).mean(0)
    analytic = gaussian_kl(mean_q, std_q, mean_p, std_p)
    torch.testing.assert_close(analytic, monte_carlo, atol=0.02, rtol=0.02)
    assert torch.all(analytic >= 0)


def test_summed_image_likelihood_matches_torch_normal_and_its_gradient():
    """The ELBO's image term, summed per frame, against torch.distributions.Normal, on the
    latent model's layout (B, T+1, 3, H, W) with the pixels stored channels-last."""
    torch.manual_seed(0)
    images = (torch.rand(2, 3, 16, 16, 3) - 0.5).permute(0, 1, 4, 2, 3)
    mean = (torch.rand(2, 3, 16, 16, 3) - 0.5).permute(0, 1, 4, 2, 3).requires_grad_()
    std = 0.1**0.5
    summed = gaussian_log_prob_sum(images, mean, std, (2, 3, 4))
    (grad,) = torch.autograd.grad(summed.sum(), mean)
    reference = torch.distributions.Normal(mean, std).log_prob(images).sum((2, 3, 4))
    (reference_grad,) = torch.autograd.grad(reference.sum(), mean)
    assert summed.shape == (2, 3)
    torch.testing.assert_close(summed, reference)
    torch.testing.assert_close(grad, reference_grad)


def test_shapes_of_posterior_prior_and_decoder():
    agent = make_agent()
    batch = agent.to_batch(make_sample(5))
    features = agent.model.encode(batch.images)
    assert features.shape == (5, 9, agent.model.encoder.feature_dim)
    post = agent.model.posterior(features, batch.actions)
    assert post.z1.shape == (5, 9, 8) and post.z2.shape == (5, 9, 16) and post.z.shape == (5, 9, 24)
    mean, std = agent.model.z1_prior(post.z2, batch.actions)
    assert mean.shape == std.shape == (5, 9, 8)
    # p(z1_1) = N(0, I)
    assert torch.all(mean[:, 0] == 0) and torch.all(std[:, 0] == 1)
    reconstruction, prediction = agent.model.reconstruct_and_predict(batch.images, batch.actions)
    assert reconstruction.shape == prediction.shape == batch.images.shape


def test_posterior_at_step_t_depends_only_on_frames_up_to_t():
    agent = make_agent()
    sample = make_sample(2)
    changed = copy.deepcopy(sample)
    t = 4
    changed["images"][:, t + 1 :] = 255 - changed["images"][:, t + 1 :]
    outputs = []
    for s in (sample, changed):
        batch = agent.to_batch(s)
        torch.manual_seed(1)
        outputs.append(agent.model.posterior(agent.model.encode(batch.images), batch.actions))
    a, b = outputs
    torch.testing.assert_close(a.z[:, : t + 1], b.z[:, : t + 1])
    assert not torch.allclose(a.z[:, t + 1 :], b.z[:, t + 1 :])


def test_model_update_lowers_the_negative_elbo_on_a_fixed_batch():
    agent = make_agent(model_lr=1e-3)
    batch = agent.to_batch(make_sample(4))
    first = agent.update_model(batch)["model/loss"]
    for _ in range(30):
        last = agent.update_model(batch)["model/loss"]
    assert last < first


def test_sac_update_does_not_move_the_latent_model_and_moves_actor_and_critic():
    agent = make_agent()
    model_before = parameters(agent.model)
    actor_before, critic_before = parameters(agent.actor), parameters(agent.critic)
    agent.update_sac(agent.to_batch(make_sample(16)))
    for before, after in zip(model_before, agent.model.parameters()):
        assert torch.equal(before, after)
    assert any(not torch.equal(b, a) for b, a in zip(actor_before, agent.actor.parameters()))
    assert any(not torch.equal(b, a) for b, a in zip(critic_before, agent.critic.parameters()))
    # And no gradient leaked into the model, to be applied by its next step.
    assert all(p.grad is None for p in agent.model.parameters())


def test_soft_target_update_is_polyak_averaging_with_tau():
    agent = make_agent(tau=0.1)
    target_before = parameters(agent.critic_target)
    agent.update_sac(agent.to_batch(make_sample(8)))
    for old, target, critic in zip(target_before, agent.critic_target.parameters(), agent.critic.parameters()):
        torch.testing.assert_close(target, 0.9 * old + 0.1 * critic)


def test_temperature_falls_when_the_policy_is_more_random_than_the_target_entropy():
    agent = make_agent()  # a fresh tanh-Gaussian policy has entropy far above -|A|
    metrics = [agent.update_sac(agent.to_batch(make_sample(8, seed=i))) for i in range(5)]
    assert metrics[0]["sac/entropy"] > agent.target_entropy
    assert agent.alpha.item() < 1.0


def test_resume_from_a_checkpoint_reproduces_the_next_update(tmp_path):
    agent = make_agent()
    for i in range(2):
        agent.update_model(agent.to_batch(make_sample(4, seed=i)))
        agent.update_sac(agent.to_batch(make_sample(8, seed=i)))
    path = checkpoint_path(tmp_path, 123)
    save_checkpoint(path, {"agent": agent.state_dict(), "torch_rng": torch.get_rng_state()})
    expected_model = agent.update_model(agent.to_batch(make_sample(4, seed=9)))
    expected_sac = agent.update_sac(agent.to_batch(make_sample(8, seed=9)))

    resumed = make_agent(seed=77)  # different initial weights, overwritten by the checkpoint
    state = load_checkpoint(path)
    resumed.load_state_dict(state["agent"])
    torch.set_rng_state(state["torch_rng"])
    assert resumed.update_model(resumed.to_batch(make_sample(4, seed=9))) == expected_model
    assert resumed.update_sac(resumed.to_batch(make_sample(8, seed=9))) == expected_sac
    for a, b in zip(agent.actor.parameters(), resumed.actor.parameters()):
        assert torch.equal(a, b)


def test_a_corrupt_checkpoint_is_named_and_an_older_one_is_used(tmp_path):
    agent = make_agent()
    save_checkpoint(checkpoint_path(tmp_path, 10), {"agent": agent.state_dict()})
    newest = checkpoint_path(tmp_path, 20)
    newest.write_bytes(b"not a checkpoint, cut short by a full disk")
    with pytest.raises(CheckpointError, match="checkpoint_000000020.pt is unreadable"):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match="trying an older checkpoint"):
        path, state = load_latest_checkpoint(tmp_path)
    assert path == checkpoint_path(tmp_path, 10) and "agent" in state
    assert not newest.exists() and (tmp_path / "corrupt" / newest.name).is_file()  # moved aside, never deleted
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        load_latest_checkpoint(tmp_path / "elsewhere")


def test_channels_last_fast_path_equals_the_plain_path():
    plain, fast = make_agent(channels_last=False), make_agent(channels_last=True)
    fast.model.load_state_dict(plain.model.state_dict())
    sample = make_sample(4)
    torch.manual_seed(3)
    expected = plain.model.loss(*_loss_args(plain, sample))
    torch.manual_seed(3)
    got = fast.model.loss(*_loss_args(fast, sample))
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-4, atol=1e-3)
    assert fast.to_batch(sample).images.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


def test_bf16_autocast_fast_path_stays_close_to_float32():
    plain, fast = make_agent(), make_agent(autocast_bf16=True)
    sample = make_sample(4)
    torch.manual_seed(3)
    expected = plain.update_model(plain.to_batch(sample))
    torch.manual_seed(3)
    got = fast.update_model(fast.to_batch(sample))
    assert got["model/loss"] == pytest.approx(expected["model/loss"], rel=0.02)


def test_bf16_sac_features_stay_close_to_float32_and_leave_the_rest_float32():
    plain, fast = make_agent(), make_agent(sac_features_bf16=True)
    fast.load_state_dict(plain.state_dict())
    batch = plain.to_batch(make_sample(8))
    torch.manual_seed(3)
    expected_features, expected_z = plain._features_and_latents(batch)
    torch.manual_seed(3)
    features, z = fast._features_and_latents(batch)
    assert features.dtype == z.dtype == torch.float32
    assert not torch.equal(features, expected_features)  # the bf16 pass did run
    torch.testing.assert_close(features, expected_features, rtol=0.02, atol=0.02)
    torch.testing.assert_close(z, expected_z, rtol=0.05, atol=0.05)
    metrics = fast.update_sac(fast.to_batch(make_sample(8, seed=1)))
    assert all(math.isfinite(v) for v in metrics.values())
    assert all(p.dtype == torch.float32 for p in fast.actor.parameters())


def test_fused_adam_fast_path_equals_the_per_tensor_adam():
    plain, fused = make_agent(fused_adam=False), make_agent(fused_adam=True)
    for seed in range(3):
        sample = make_sample(4, seed=seed)
        for agent in (plain, fused):
            torch.manual_seed(seed)
            agent.update_model(agent.to_batch(sample))
            agent.update_sac(agent.to_batch(make_sample(8, seed=seed)))
    for net in ("model", "actor", "critic"):
        for a, b in zip(getattr(plain, net).parameters(), getattr(fused, net).parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class BatchesBySize:
    """Stands in for the replay's sampling: the same sample every time for each batch size."""

    def __init__(self, **samples_by_size: dict[str, np.ndarray]):
        self.samples = {int(size[1:]): sample for size, sample in samples_by_size.items()}

    def sample(self, batch: int, rng) -> dict[str, np.ndarray]:
        return self.samples[batch]


@pytest.fixture
def one_torch_thread():
    # Both sides of a concurrent step run with half of torch's threads; with one thread in all
    # the sequential reference computes every sum in the same order.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_concurrent_updates_equal_the_sac_step_on_the_model_before_its_update(one_torch_thread):
    concurrent, reference = make_agent(concurrent_updates=True), make_agent(concurrent_updates=True)
    for seed in range(3):
        replay = BatchesBySize(b4=make_sample(4, seed=seed), b8=make_sample(8, seed=10 + seed))
        torch.manual_seed(seed)
        metrics = concurrent.train_step(replay, None, 4, 8)
        # The same maths in turn: SAC reads the model first, with the SAC thread's generator.
        torch.manual_seed(seed)
        sac_batch = reference.to_batch(replay.sample(8, None))
        with drawing_from(reference.sac_generator):
            features, z = reference._features_and_latents(sac_batch)
        expected = reference._model_step(reference._model_gradients(reference.to_batch(replay.sample(4, None))))
        with drawing_from(reference.sac_generator):
            expected.update(reference._update_sac(sac_batch, features, z))
        assert metrics == expected
    assert torch.get_num_threads() == 1  # the step gives back the thread count it found
    for net in ("model", "actor", "critic", "critic_target"):
        for a, b in zip(getattr(concurrent, net).parameters(), getattr(reference, net).parameters()):
            assert torch.equal(a, b), net
    assert concurrent.model_updates == concurrent.sac_updates == 3


def test_a_concurrent_agents_state_carries_its_sac_threads_generator(one_torch_thread):
    first = make_agent(concurrent_updates=True)
    replay = BatchesBySize(b4=make_sample(4), b8=make_sample(8, seed=1))
    first.train_step(replay, None, 4, 8)
    state = copy.deepcopy(first.state_dict())
    assert "sac_generator" in state and "sac_generator" not in make_agent().state_dict()
    resumed = make_agent(seed=5, concurrent_updates=True)  # another seed: another generator until loaded
    resumed.load_state_dict(state)
    for agent in (first, resumed):
        torch.manual_seed(7)
        agent.train_step(replay, None, 4, 8)
    for a, b in zip(first.actor.parameters(), resumed.actor.parameters()):
        assert torch.equal(a, b)


def test_an_error_in_the_model_step_waits_for_the_sac_thread_and_goes_up(one_torch_thread):
    agent = make_agent(concurrent_updates=True)
    sample = make_sample(4)
    sample["actions"] = sample["actions"][:, :-1]  # one action short of the frames: the model step fails
    with pytest.raises(RuntimeError):
        agent.train_step(BatchesBySize(b4=sample, b8=make_sample(8, seed=1)), None, 4, 8)
    assert agent.model_updates == 0 and agent.sac_updates == 1  # the SAC step finished before the error went up
    assert torch.get_num_threads() == 1


def _loss_args(agent, sample):
    batch = agent.to_batch(sample)
    return batch.images, batch.actions, batch.rewards, batch.valid


def test_policy_history_pads_the_episode_start_and_rolls():
    history = PolicyHistory(length=4, image_shape=(2, 2, 3), action_dim=2, vector_dims={"goal": 2})
    first = np.full((2, 2, 3), 7, np.uint8)
    history.reset({"image": first, "goal": np.array([1.0, 0.0])})
    assert np.all(history.frames == 7) and np.all(history.actions == 0)
    np.testing.assert_array_equal(history.vectors["goal"], [[1.0, 0.0]] * 4)
    for k in range(1, 6):
        history.push(np.full(2, k, np.float32), {"image": np.full((2, 2, 3), 10 + k, np.uint8), "goal": np.full(2, k)})
    assert [int(f[0, 0, 0]) for f in history.frames] == [12, 13, 14, 15]
    assert [int(a[0]) for a in history.actions] == [3, 4, 5]  # the actions between those frames
    assert [int(g[0]) for g in history.vector(["goal"])] == [2, 3, 4, 5]


def test_act_gives_bounded_actions_and_a_repeatable_evaluation_action():
    agent = make_agent()
    rng = np.random.default_rng(0)
    history = PolicyHistory(8, (64, 64, 3), ACTION_DIM, {"goal": GOAL_DIM})
    history.frames[:] = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    history.actions[:] = rng.uniform(-1, 1, (7, ACTION_DIM))
    history.vectors["goal"][:] = [1.0, 0.0]
    sampled = agent.act(history, explore=True)
    assert sampled.shape == (ACTION_DIM,) and np.all(np.abs(sampled) <= 1)
    np.testing.assert_array_equal(agent.act(history, explore=False), agent.act(history, explore=False))
