"""Shared fixtures: hydra configs composed the way the CLI composes them, and real MuJoCo envs.

Envs are costly to build (~0.3 s each, plus an OpenGL context), so tests that only read or that
reset with explicit options share one session-wide env; tests about determinism or that need a
particular config build fresh ones through `make_fresh_env`, which closes them afterwards.
"""

from __future__ import annotations

import dynamixel_sdk as sdk
import numpy as np
import pytest

# Importing the sim backend chooses the offscreen GL platform (MUJOCO_GL) once for the whole
# session, before any test renders, and child processes (the CLI script) inherit it.
import slac_robot.sim  # noqa: F401
from slac_robot.config import load_config

# Short episodes keep the suite fast; tests that need longer ones override this again.
FAST_OVERRIDES = ("task.episode_steps=5",)


def compose(*overrides: str):
    """The rollout config with the fast defaults and then `overrides` (hydra syntax)."""
    return load_config("rollout", [*FAST_OVERRIDES, *overrides])


@pytest.fixture
def load_cfg():
    """Factory: load_cfg("task=random", ...) -> the composed rollout DictConfig."""
    return compose


@pytest.fixture
def cfg():
    """The rollout config with short episodes."""
    return compose()


@pytest.fixture
def make_fresh_env():
    """Factory: make_fresh_env(cfg, render=False) -> a newly built env, closed at teardown."""
    from slac_robot.backends import make_env

    built = []

    def make(config, render: bool = False):
        env = make_env(config, render=render)
        built.append(env)
        return env

    yield make
    for env in built:
        env.close()


@pytest.fixture(scope="session")
def shared_env():
    """One env for tests that don't depend on the state left by others (they reset it first)."""
    from slac_robot.backends import make_env

    env = make_env(compose())
    yield env
    env.close()


@pytest.fixture(scope="session")
def safety_limits():
    """(lower, upper) joint limits from the rollout config's safety section."""
    safety = compose().safety
    return np.asarray(safety.joint_lower_rad, dtype=float), np.asarray(safety.joint_upper_rad, dtype=float)


# dynamixel-sdk on a test file's `emulator` fixture (a BusEmulator): the port at 1 Mbps, and
# the Protocol 2.0 packet handler.
@pytest.fixture
def port(emulator):
    handler = sdk.PortHandler(emulator.device_path)
    assert handler.openPort() and handler.setBaudRate(1_000_000)
    yield handler
    handler.closePort()


@pytest.fixture
def ph():
    return sdk.PacketHandler(2.0)
