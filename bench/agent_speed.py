"""Update and action speed of every agent configuration (configs/agent/*.yaml), and where an
update's time goes.

For each configuration, at its own batch sizes (agent.schedule): updates/s of one training step
(SLAC: one model + one SAC update; the baselines: one SAC update), the policy's action latency
p50/p99 and peak memory; for SLAC also the split of a step: the model's forward pass (encoder,
filtering, decoder, likelihoods), its backward pass and Adam step, and the SAC step. Batches are
uint8 replay samples, so the host-to-device copy and the scaling are part of every update.

    python bench/agent_speed.py                          # every configuration, CPU (and CUDA if present)
    python bench/agent_speed.py --agents slac_cpu --device cpu
    python bench/agent_speed.py --device cuda --bf16     # bf16 autocast on a GPU (SLAC)
    python bench/agent_speed.py --agents slac_cpu --device cpu agent.sac_features_bf16=true
    python bench/agent_speed.py --agents slac_cpu --device cpu agent.concurrent_updates=true

Reference (FACTS.md): the public PyTorch port (toshikwa/slac.pytorch) on a 2-core CPU machine of
CI's kind: 1.03 model/s, 0.71 SAC/s, 0.43 combined/s (median of 3), action 4.1 ms median, at the
paper's sizes (agent=slac here).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch

from slac_robot.agent.policy import make_history
from slac_robot.backends import make_agent
from slac_robot.config import load_config

PORT_COMBINED_PER_S = 0.43  # toshikwa/slac.pytorch on a 2-core CPU machine like CI's (FACTS.md)
CONFIGS = ("slac", "slac_cpu", "sac_state", "sac_pixels", "sac_pixels_drq")
ACTION_DIM = 9
SPACES = SimpleNamespace(  # the valve's observations and actions
    observation_space=gym.spaces.Dict({
        "image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
        "joint_pos": gym.spaces.Box(-np.pi, np.pi, (9,), np.float32),
        "valve": gym.spaces.Box(-1, 1, (2,), np.float32),
        "goal": gym.spaces.Box(-1, 1, (2,), np.float32),
    }),
    action_space=gym.spaces.Box(-1, 1, (ACTION_DIM,), np.float32),
)


class FixedReplay:
    """Stands in for the replay with pre-drawn samples (its sampling cost: bench/replay_sample.py)."""

    def __init__(self, rng: np.random.Generator, steps: int):
        self.rng, self.steps, self.samples = rng, steps, {}

    def sample(self, batch: int, rng) -> dict[str, np.ndarray]:
        if batch not in self.samples:
            r, T = self.rng, self.steps
            self.samples[batch] = {
                "images": r.integers(0, 256, (batch, T + 1, 64, 64, 3), dtype=np.uint8),
                "actions": r.uniform(-1, 1, (batch, T, ACTION_DIM)).astype(np.float32),
                "rewards": r.normal(size=(batch, T)).astype(np.float32),
                "terminated": np.zeros((batch, T), dtype=bool),
                "valid": np.ones((batch, T + 1), dtype=bool),
                **{k: r.normal(size=(batch, T + 1, s.shape[0])).astype(np.float32)
                   for k, s in SPACES.observation_space.spaces.items() if k != "image"},
            }
        return self.samples[batch]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_s(fn, iterations: int, device: torch.device) -> float:
    """Median seconds of `iterations` timed calls."""
    times = []
    for _ in range(iterations):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def slac_split(agent, replay: FixedReplay, model_batch: int, iterations: int, device: torch.device) -> str:
    """Where one SLAC step's time goes: model forward, backward + Adam, SAC step."""
    batch = agent.to_batch(replay.sample(model_batch, None))

    def forward():
        with torch.no_grad():
            agent.model.loss(batch.images, batch.actions, batch.rewards, batch.valid, agent.proprio(batch))

    forward_s = median_s(forward, iterations, device)
    model_s = median_s(lambda: agent.update_model(batch), iterations, device)
    return f"model forward {forward_s * 1e3:.0f} ms, backward + Adam {(model_s - forward_s) * 1e3:.0f} ms"


def bench(name: str, overrides: list[str], device: torch.device, iterations: int) -> None:
    cfg = load_config("train", [f"agent={name}", *overrides])
    torch.manual_seed(0)
    agent = make_agent(cfg.agent, SPACES, device)
    s = cfg.schedule
    replay = FixedReplay(np.random.default_rng(0), agent.sequence_length)
    step = lambda: agent.train_step(replay, None, s.model_batch_size, s.sac_batch_size)  # noqa: E731
    for _ in range(2):  # warm-up: allocator, oneDNN/cuDNN algorithm choice
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_s = median_s(step, iterations, device)
    detail = ""
    if agent.has_latent_model:
        sac_s = median_s(lambda: agent.update_sac(agent.to_batch(replay.sample(s.sac_batch_size, None))),
                         iterations, device)
        shared = " (SAC on the model's batch and pass)" if agent.cfg.shared_batch else ""
        detail = f"; {slac_split(agent, replay, s.model_batch_size, iterations, device)}, SAC step {sac_s * 1e3:.0f} ms{shared}"

    history = make_history(agent, SPACES.observation_space)
    history.frames[:] = np.random.default_rng(1).integers(0, 256, history.frames.shape, dtype=np.uint8)
    latencies = []
    for i in range(200):
        synchronize(device)
        start = time.perf_counter()
        agent.act(history, explore=True)
        if i >= 20:
            latencies.append(time.perf_counter() - start)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB GPU"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB RSS (process so far)"
    batches = (f"model {s.model_batch_size} x {agent.sequence_length + 1}, SAC {s.sac_batch_size}"
               if agent.has_latent_model else f"SAC {s.sac_batch_size}")
    # The port was measured on a 2-core CPU: a ratio against it means something only on one.
    versus = (f" = {1 / step_s / PORT_COMBINED_PER_S:.2f}x the public port"
              if name == "slac" and device.type == "cpu" else "")
    print(f"{name:15s} {1 / step_s:7.2f} steps/s ({batches}){versus}{detail}")
    print(f"{'':15s} action p50 {p50:.2f} ms, p99 {p99:.2f} ms; peak {peak}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--agents", nargs="+", default=list(CONFIGS), help=f"agent configs (default: {CONFIGS})")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (SLAC; fast on GPUs, slow on CPUs)")
    parser.add_argument("overrides", nargs="*", help="train config overrides, e.g. agent.shared_batch=true")
    args = parser.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: no CUDA device here")
            continue
        dev = torch.device(device)
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        print(f"{device} ({name}; median of {args.iterations}); one step = one update of everything that learns")
        for agent in args.agents:
            extra = ["agent.autocast_bf16=true"] if args.bf16 and agent.startswith("slac") else []
            bench(agent, [*args.overrides, *extra], dev, args.iterations)


if __name__ == "__main__":
    main()
