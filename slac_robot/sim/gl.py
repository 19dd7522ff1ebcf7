"""Choosing MuJoCo's offscreen OpenGL platform: EGL, falling back to OSMesa.

MuJoCo reads MUJOCO_GL (and PyOpenGL reads PYOPENGL_PLATFORM) once, when `mujoco` sets up its
renderer, and a failed platform cannot be swapped for another in the same process. So each
candidate is tried in a short child process, and the first that renders is set for this process
(and inherited by its children). A user's own MUJOCO_GL is always respected.
"""

from __future__ import annotations

import os
import subprocess
import sys

CANDIDATES = ("egl", "osmesa")

_PROBE = (
    "import mujoco\n"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"1\"/></worldbody></mujoco>')\n"
    "r = mujoco.Renderer(m, 8, 8)\n"
    "r.update_scene(mujoco.MjData(m))\n"
    "r.render()\n"
)

INSTALL_HINT = (
    "Install the system libraries for offscreen rendering and try again. On Debian/Ubuntu: "
    "sudo apt-get install -y libegl1 libgl1-mesa-dri libosmesa6 "
    "(`make setup` does this for you when it runs as root or with sudo)."
)


class NoOffscreenGL(RuntimeError):
    """Neither EGL nor OSMesa can render on this machine."""


def renders_with(platform: str) -> tuple[bool, str]:
    """Tries to render one small frame with MUJOCO_GL=platform in a child process.

    Returns (True, "") on success, else (False, the last line the child printed to stderr)."""
    env = dict(os.environ, MUJOCO_GL=platform, PYOPENGL_PLATFORM=platform)
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    if probe.returncode == 0:
        return True, ""
    lines = [line for line in probe.stderr.strip().splitlines() if line.strip()]
    return False, lines[-1] if lines else f"exit code {probe.returncode}"


def ensure_offscreen_gl(candidates: tuple[str, ...] = CANDIDATES) -> str:
    """Sets MUJOCO_GL for this process to the first working platform of `candidates` and
    returns its name; a MUJOCO_GL already set is kept as it is.

    Raises NoOffscreenGL, naming the packages to install, when none works."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    failures = []
    for platform in candidates:
        ok, why = renders_with(platform)
        if ok:
            os.environ["MUJOCO_GL"] = platform
            os.environ["PYOPENGL_PLATFORM"] = platform
            return platform
        failures.append(f"{platform}: {why}")
    raise NoOffscreenGL(
        "MuJoCo cannot render offscreen (" + "; ".join(failures) + "). " + INSTALL_HINT
    )
