"""What the tools read of a `slac-robot train` run: its config, an env built from it, and its
agent with the newest sound checkpoint (a damaged newer one is named, not moved)."""

from __future__ import annotations

import contextlib
import pathlib
from typing import Iterator

import torch

from slac_robot.agent.checkpoint import load_latest_checkpoint
from slac_robot.backends import make_agent, make_env
from slac_robot.config import load_saved_config


@contextlib.contextmanager
def opened_run(run_dir: pathlib.Path, latent_model: bool = False) -> Iterator[tuple]:
    """Yields (config, env, agent on the CPU with the run's newest checkpoint); closes the env after.
    latent_model: the tool reads SLAC's latent state: SystemExit with one line for another agent."""
    cfg = load_saved_config(run_dir / "config.yaml", "run")
    env = make_env(cfg)
    try:
        agent = make_agent(cfg.agent, env, torch.device("cpu"))
        if latent_model and not agent.has_latent_model:
            raise SystemExit(f"{run_dir}: agent={cfg.agent.name} has no latent model; this tool reads SLAC's")
        _, state = load_latest_checkpoint(run_dir / "checkpoints", move_damaged=False)
        agent.load_state_dict(state["agent"])
        yield cfg, env, agent
    finally:
        env.close()
