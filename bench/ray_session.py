"""A session on Ray with 1, 2 and 4 simulated claws on this machine: what Ray costs the actors.

  python bench/ray_session.py [--actors 1 2 4] [--episodes 3] [--episode-steps 40] [--backend emulated]

For each number of actors it runs the real command (`slac-robot train session.learner=ray
session.actors=N`, a tiny agent so that the learner publishes often, 10 Hz on the wall clock)
and prints, from the files the session leaves (actors/<robot>/link.json, control_loop.json):
  - bytes per episode on the wire (the compressed episode file Ray carries),
  - a published policy's delay to *every* actor (per version, the slowest actor): delivered
    (in the actor's process) and taken up (the first control tick acting with it: the actor
    looks once a tick, so up to one period more), p50 / p99 / max,
  - each actor's control-loop period error (p99, max) and overruns while Ray ships data.
Then the learner's ingestion capacity: the session's own episodes sent to a fresh learner as
fast as 1, 2 and 4 senders can, episodes/s until durable (fsync'ed) in its replay.
Prints figures; nothing is asserted. On a loaded machine the jitter says as much about the load.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

TINY = ["device=cpu", "agent.width=0.125", "agent.hidden=[32,32]", "agent.z2_dim=16",
        "schedule.initial_model_updates=3", "schedule.model_batch_size=4", "schedule.sac_batch_size=8",
        "schedule.eval_every_episodes=0", "session.publish_every_updates=1", "session.checkpoint_every_updates=1000",
        "session.log_every_updates=50", "session.poll_s=0.02"]


def percentiles(values) -> str:
    if not values:
        return "none"
    v = np.asarray(list(values), dtype=float)
    return f"p50 {np.percentile(v, 50):6.1f}  p99 {np.percentile(v, 99):6.1f}  max {v.max():6.1f} ms  ({len(v)} publishes)"


def run_session(actors: int, episodes: int, episode_steps: int, out_dir: pathlib.Path, backend: str) -> None:
    script = shutil.which("slac-robot") or str(pathlib.Path(sys.executable).with_name("slac-robot"))
    command = [script, "train", f"out_dir={out_dir}", f"backend={backend}", "session.learner=ray", f"session.actors={actors}",
               f"task.episode_steps={episode_steps}", f"schedule.total_env_steps={actors * episodes * episode_steps}",
               f"schedule.initial_collection_steps={episode_steps}", *TINY]
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"the session with {actors} actors failed:\n{run.stderr}")
    print(f"\n{actors} actor(s), backend={backend}: session of {actors * episodes} episodes in {time.monotonic() - started:.0f} s")
    links = {}
    for robot_dir in sorted((out_dir / "actors").iterdir()):
        links[robot_dir.name] = json.loads((robot_dir / "link.json").read_text())
        loop = json.loads((robot_dir / "control_loop.json").read_text())
        print(f"  {robot_dir.name}: control loop |period error| p99 {loop['p99_ms']:.2f} ms, max {loop['max_ms']:.2f} ms, "
              f"{loop['overruns']} overruns, {loop['ticks']} ticks")
    sent = sum(link["bytes_sent"] for link in links.values())
    acked = sum(link["acknowledged"] for link in links.values())
    print(f"  bytes per episode on the wire: {sent / max(acked, 1) / 1e3:.1f} kB ({acked} episodes)")
    for kind in ("delivered_ms", "taken_up_ms"):
        versions = set.intersection(*(set(link[kind]) for link in links.values())) if links else set()
        slowest = [max(link[kind][v] for link in links.values()) for v in versions]
        print(f"  publish -> every actor, {kind[:-3].replace('_', ' ')}: {percentiles(slowest)}")


def restamp(content: bytes, robot: str, robot_episode: int) -> bytes:
    """An episode file's bytes stamped as robot's episode robot_episode."""
    import io

    import numpy as np

    with np.load(io.BytesIO(content), allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(robot=np.str_(robot), robot_episode=np.int64(robot_episode))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def ingestion(replay_dir: pathlib.Path, senders: int, work: pathlib.Path) -> None:
    import ray
    from omegaconf import OmegaConf

    from slac_robot.agent.replay import episode_summary
    from slac_robot.config import load_config
    from slac_robot.runtime.ray_session import LearnerService

    files = sorted(replay_dir.glob("episode_*.npz"))
    contents = [(p.read_bytes(), episode_summary(p)) for p in files]
    cfg = OmegaConf.to_container(load_config("train", ["session.learner=ray", *TINY]), resolve=True)
    run_dir = work / f"ingest_{senders}"
    run_dir.mkdir()
    learner = ray.remote(LearnerService).options(max_concurrency=senders + 4).remote(str(run_dir), cfg)
    ray.get(learner.status.remote())
    rounds = max(1, 200 // len(contents))
    # The learner stores an episode only under the robot and index stamped in its bytes: each
    # sender's copies are stamped as its own (before the clock starts).
    stamped = {s: [[restamp(content, f"bench{s}", r * len(contents) + i) for i, (content, _) in enumerate(contents)]
                   for r in range(rounds)] for s in range(senders)}

    def send(sender: int) -> None:
        for r in range(rounds):
            for i, (_, (_, steps, episode_return, tripped)) in enumerate(contents):
                ray.get(learner.ingest.remote(f"bench{sender}", r * len(contents) + i, steps, stamped[sender][r][i],
                                              episode_return, tripped))

    threads = [threading.Thread(target=send, args=(s,)) for s in range(senders)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    total = senders * rounds * len(contents)
    print(f"  {senders} sender(s): {total / elapsed:7.1f} episodes/s ingested (durable), {total} episodes")
    ray.get(learner.stop.remote(5.0))
    ray.kill(learner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--episodes", type=int, default=3, help="episodes per actor")
    parser.add_argument("--episode-steps", type=int, default=40)
    parser.add_argument("--backend", default="sim", help="sim, or emulated: the real driver through the bus emulator")
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="ray_bench_"))
    try:
        for actors in args.actors:
            run_session(actors, args.episodes, args.episode_steps, work / f"actors_{actors}", args.backend)
        import ray

        from slac_robot.runtime.ray_session import connect

        print("\nlearner ingestion capacity (the sessions' own episodes, sent back to back):")
        connect(None, min_cpus=max(args.actors) + 2)
        for senders in args.actors:
            ingestion(work / f"actors_{max(args.actors)}" / "replay", senders, work)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
