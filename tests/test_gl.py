"""Choosing the offscreen OpenGL platform (slac_robot/sim/gl.py), with real child processes."""

import os
import subprocess
import sys

from slac_robot.sim import gl


def test_the_platform_in_use_renders():
    # Importing slac_robot.sim (conftest) chose a platform, or kept the user's.
    assert os.environ["MUJOCO_GL"] in ("egl", "osmesa", "glfw", "glx")
    ok, why = gl.renders_with(os.environ["MUJOCO_GL"])
    assert ok, why


def test_a_platform_that_cannot_render_is_reported_with_its_reason():
    ok, why = gl.renders_with("no-such-platform")
    assert not ok
    assert "MUJOCO_GL" in why


def _ensure_in_child(candidates, env_gl=None):
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    if env_gl:
        env["MUJOCO_GL"] = env_gl
    code = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('gl', {gl.__file__!r})\n"
        "gl = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(gl)\n"
        "try:\n"
        f"    print(gl.ensure_offscreen_gl({candidates!r}))\n"
        "except gl.NoOffscreenGL as error:\n"
        "    print('NoOffscreenGL:', error)\n"
    )
    # gl.py is loaded on its own: importing slac_robot.sim would already choose a platform.
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_first_working_candidate_is_chosen():
    assert _ensure_in_child(("no-such-platform", os.environ["MUJOCO_GL"])) == os.environ["MUJOCO_GL"]


def test_when_nothing_renders_the_error_names_the_packages_to_install():
    out = _ensure_in_child(("bogus-a", "bogus-b"))
    assert out.startswith("NoOffscreenGL:")
    assert "bogus-a" in out and "bogus-b" in out
    assert "libegl1" in out and "libosmesa6" in out


def test_a_users_own_choice_is_kept_without_probing():
    assert _ensure_in_child(("bogus-a",), env_gl="osmesa") == "osmesa"
