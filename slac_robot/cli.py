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

from slac_robot.config import ConfigError, load_config, require_int

USAGE = """usage: slac-robot COMMAND [key=value ...] [--cfg]

commands:
{commands}

Overrides use hydra's syntax, e.g.  slac-robot rollout task=three_goal episodes=5 policy=random
--cfg prints the composed config and exits."""


def rollout(cfg: DictConfig) -> int:
    """Runs cfg.episodes episodes in the configured backend; writes metrics and videos."""
    from slac_robot.backends import make_env, make_policy
    from slac_robot.runtime.rollout import run_episodes
    from slac_robot.runtime.stop import Interrupted, StopSignal

    episodes = require_int("episodes", cfg.episodes)
    require_int("seed", cfg.seed, minimum=0)
    require_int("video.agent_scale", cfg.video.agent_scale)
    env = make_env(cfg, render=bool(cfg.video.view))
    try:
        policy = make_policy(cfg.policy, env)
        out_dir = _run_dir(cfg, "rollout")
        OmegaConf.save(cfg, out_dir / "config.yaml")
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
            )
    except Interrupted as interrupt:
        print(f"slac-robot rollout: {interrupt}; finished episodes are in {out_dir}", file=sys.stderr)
        return interrupt.exit_code
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


COMMANDS: dict[str, tuple[Callable[[DictConfig], int], str]] = {
    "rollout": (rollout, "run episodes with a random or scripted policy; write metrics and videos"),
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
    listing = "\n".join(f"  {name:<12}{doc}" for name, (_, doc) in COMMANDS.items())
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
        return COMMANDS[command][0](cfg)
    except ConfigError as error:
        print(f"slac-robot {command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slac-robot {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
