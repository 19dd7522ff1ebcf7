"""The simulated camera: offscreen MuJoCo rendering behind the Camera interface."""

from __future__ import annotations

import mujoco

from slac_robot.config import ConfigError
from slac_robot.interfaces import Frame, StaleFrameError
from slac_robot.sim import scene
from slac_robot.sim.gl import INSTALL_HINT
from slac_robot.sim.physics import ValveSimulation

# Which geom groups each visual model draws. "light": the floor, the collision primitives and
# the markers, a few hundred triangles, fast on a CPU renderer; "full": ROBEL's visual meshes.
VISUAL_GROUPS = {
    "light": (0, scene.COLLISION_GROUP, scene.MARKER_GROUP),
    "full": (0, 1, 2, scene.MARKER_GROUP),
}


class SimCamera:
    """Renders one of the scene's fixed cameras from the simulation's current state.

    camera_name: `agent` (what the policy sees) or `view` (third-person, for videos).
    width_px, height_px: image size (SLAC: 64x64).
    visual: "light" or "full" (see VISUAL_GROUPS).
    multisamples: anti-aliasing samples; 0 is fastest and is what the agent camera uses.
    shadows: draw shadows (costly on a CPU renderer).

    `freeze` injects a camera fault for tests: the feed stops, as a hardware camera's does when
    its stream dies, and the last frame goes stale as the simulated time moves on.
    """

    def __init__(
        self,
        simulation: ValveSimulation,
        camera_name: str,
        width_px: int,
        height_px: int,
        visual: str = "light",
        multisamples: int = 0,
        shadows: bool = False,
    ):
        if visual not in VISUAL_GROUPS:
            raise ConfigError(
                f"camera visual={visual!r} is not one of: {', '.join(VISUAL_GROUPS)}"
            )
        if width_px < 1 or height_px < 1:
            raise ConfigError(f"camera size must be positive, got {width_px}x{height_px}")
        model = simulation.model
        if camera_name not in {model.camera(i).name for i in range(model.ncam)}:
            raise ConfigError(f"the scene has no camera named {camera_name!r}")
        self._sim = simulation
        self._camera = camera_name
        # The offscreen buffer and multisampling are fixed when the GL context is made.
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width_px)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height_px)
        model.vis.quality.offsamples = multisamples
        try:
            self._renderer = mujoco.Renderer(model, height=height_px, width=width_px)
        except mujoco.FatalError as error:
            raise RuntimeError(f"MuJoCo could not create a renderer: {error}. {INSTALL_HINT}")
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = 0
        for group in VISUAL_GROUPS[visual]:
            self._option.geomgroup[group] = 1
        self._option.sitegroup[:] = 0
        self._flags = {
            mujoco.mjtRndFlag.mjRND_SHADOW: shadows,
            mujoco.mjtRndFlag.mjRND_REFLECTION: False,
            mujoco.mjtRndFlag.mjRND_SKYBOX: False,
        }
        self._index = 0
        self._frozen = False
        self._last: Frame | None = None

    def read(self, max_age_s: float = float("inf")) -> Frame:
        """Renders the current state, so the frame is fresh; while frozen, hands out the last
        frame again and raises StaleFrameError once it is older than max_age_s (simulated time)."""
        frame = self._last if self._frozen and self._last is not None else self._render()
        age_s = float(self._sim.data.time) - frame.stamp_s
        if age_s > max_age_s:
            raise StaleFrameError(
                f"sim camera {self._camera!r}: the newest frame is {age_s:.3f} s old, more than "
                f"{max_age_s:.3f} s (the camera is frozen)"
            )
        return frame

    def freeze(self, frozen: bool = True) -> None:
        """Fault injection: while frozen, no new frame comes (read returns the last one, with its
        index and stamp); frozen=False lets frames come again."""
        if frozen and self._last is None:
            self._render()  # the frame the feed stops on
        self._frozen = frozen

    @property
    def frozen(self) -> bool:
        return self._frozen

    def _render(self) -> Frame:
        self._renderer.update_scene(self._sim.data, camera=self._camera, scene_option=self._option)
        for flag, on in self._flags.items():
            self._renderer.scene.flags[flag] = on
        image = self._renderer.render()
        self._index += 1
        self._last = Frame(image=image, stamp_s=float(self._sim.data.time), index=self._index)
        return self._last

    def close(self) -> None:
        self._renderer.close()
