"""SLAC update and action speed at the paper's batch sizes (model 32, SAC 256 sequences of 9).

Prints model updates/s, SAC updates/s, combined (model + SAC) updates/s, the policy's action
latency p50/p99 and peak memory, on CPU and on CUDA when present. Batches are uint8 replay
samples, so the host-to-device copy and the on-device scaling are part of every update.

    python bench/agent_speed.py                      # CPU (and CUDA if present), fast paths on
    python bench/agent_speed.py --plain              # the plain path: contiguous NCHW, float32
    python bench/agent_speed.py --device cuda --bf16 # bf16 autocast on a GPU

Reference (FACTS.md): the public PyTorch port (toshikwa/slac.pytorch) on a 2-core CPU machine of
CI's kind: 1.03 model/s, 0.71 SAC/s, 0.43 combined/s (median of 3), action 4.1 ms median.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch

from slac_robot.agent.slac import SlacAgent, SlacConfig

PORT_COMBINED_PER_S = 0.43  # toshikwa/slac.pytorch on a 2-core CPU machine like CI's (FACTS.md)
ACTION_DIM, GOAL_DIM, STEPS = 9, 2, 8


def sample(rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    return {
        "images": rng.integers(0, 256, (batch, STEPS + 1, 64, 64, 3), dtype=np.uint8),
        "actions": rng.uniform(-1, 1, (batch, STEPS, ACTION_DIM)).astype(np.float32),
        "rewards": rng.normal(size=(batch, STEPS)).astype(np.float32),
        "terminated": np.zeros((batch, STEPS), dtype=bool),
        "goal": rng.normal(size=(batch, STEPS + 1, GOAL_DIM)).astype(np.float32),
        "valid": np.ones((batch, STEPS + 1), dtype=bool),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(fn, iterations: int, device: torch.device) -> float:
    """Median updates/s over `iterations` timed calls."""
    times = []
    for _ in range(iterations):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


def bench(device: str, iterations: int, channels_last: bool, bf16: bool) -> None:
    dev = torch.device(device)
    torch.manual_seed(0)
    agent = SlacAgent(ACTION_DIM, GOAL_DIM, SlacConfig(channels_last=channels_last, autocast_bf16=bf16), dev)
    rng = np.random.default_rng(0)
    # Pre-drawn batches: the replay's sampling cost is measured by bench/replay_sample.py.
    model_batches = [sample(rng, 32) for _ in range(2)]
    sac_batches = [sample(rng, 256) for _ in range(2)]
    model_step = lambda: agent.update_model(agent.to_batch(model_batches[agent.model_updates % 2]))  # noqa: E731
    sac_step = lambda: agent.update_sac(agent.to_batch(sac_batches[agent.sac_updates % 2]))  # noqa: E731
    for _ in range(2):  # warm-up: allocator, oneDNN/cuDNN algorithm choice
        model_step(), sac_step()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model_rate = rate(model_step, iterations, dev)
    sac_rate = rate(sac_step, iterations, dev)
    combined_rate = rate(lambda: (model_step(), sac_step()), iterations, dev)

    frames = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    actions = np.zeros((7, ACTION_DIM), np.float32)
    goal = np.zeros(GOAL_DIM, np.float32)
    latencies = []
    for i in range(300):
        synchronize(dev)
        start = time.perf_counter()
        agent.act(frames, actions, goal, explore=True)
        if i >= 20:
            latencies.append(time.perf_counter() - start)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    if dev.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB GPU"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB RSS"
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    path = ("channels_last" if channels_last else "plain NCHW") + (", bf16 autocast" if bf16 else ", float32")
    print(f"{device} ({name}; {path}; median of {iterations})")
    print(f"  model updates/s     {model_rate:8.2f}   (batch 32 x 9 frames)")
    print(f"  SAC updates/s       {sac_rate:8.2f}   (batch 256 x 9 frames)")
    print(f"  combined updates/s  {combined_rate:8.2f}   ({combined_rate / PORT_COMBINED_PER_S:.2f}x the public "
          f"port's {PORT_COMBINED_PER_S}/s on a 2-core CPU)")
    print(f"  action latency      p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"  peak memory         {peak}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--plain", action="store_true", help="contiguous NCHW instead of channels_last")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (fast on GPUs, slow on CPUs without bf16 units)")
    args = parser.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: no CUDA device here")
            continue
        bench(device, args.iterations, channels_last=not args.plain, bf16=args.bf16)


if __name__ == "__main__":
    main()
