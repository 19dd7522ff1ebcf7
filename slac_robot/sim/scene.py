"""The D'Claw valve scene: ROBEL's MJCF from the `robel` wheel, made loadable and camera-ready.

The `robel` wheel (installed with `--no-deps`) ships the scene files, but its Python code needs
gym and mujoco-py, so we locate the files without importing it. Its XML files carry an
`<?xml ...?>` declaration after a licence comment, which current MuJoCo rejects; we parse each
file ourselves, expand `<include>` elements in Python and hand MuJoCo one XML string.

On top of ROBEL's scene we add what the agent needs (see `build_valve_scene_xml`):
- a camera of our own, beside the station, that sees the fingers, the valve and the goal;
- the goal marker as a mocap body floating beside the valve, where the camera sees it;
- opaque colours on the collision primitives, the "light" visual model the agent camera renders
  (the visual meshes hold ~159k triangles, far too many for fast CPU rendering).
ROBEL's hardware-overlay chain (a ghost claw in geom group 3, nine extra joints) is left out.
"""

from __future__ import annotations

import importlib.util
import pathlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import mujoco
import numpy as np

from slac_robot.config import ConfigError

ROBEL_SCENE = "dclaw/assets/dclaw3xh_valve3_v0.xml"
OVERLAY_INCLUDE = "chain3xh_overlay.xml"

# Names in ROBEL's scene that the rest of the package relies on.
CLAW_JOINTS = (
    "FFJ10", "FFJ11", "FFJ12",
    "MFJ20", "MFJ21", "MFJ22",
    "THJ30", "THJ31", "THJ32",
)
VALVE_JOINT = "valve_OBJRx"
GOAL_BODY = "target"
AGENT_CAMERA = "agent"
VIEW_CAMERA = "view"

# Geom groups in ROBEL's files: 1 visual meshes, 2 station visuals, 4 collision primitives.
COLLISION_GROUP = 4
# The group our markers (goal marker, valve mark) live in, shown by both visual models.
MARKER_GROUP = 5

# The valve's red marker (SceneLayout.valve_marker), on the prong along +y of the valve body:
# MJCF capsule (radius, half-length) and position in that body. "prong" is a capsule a shade
# larger than ROBEL's prong primitive (radius 0.021, half-length 0.035, centre (0, 0.038, 0.054)),
# so the whole prong shows red: at the look-alikes it changes 2.5-3.4x the stripe's pixels (64x64).
VALVE_MARKERS = {
    "prong": ("0.0225 0.0355", "0 0.038 0.054"),
    "stripe": ("0.006 0.025", "0 0.045 0.077"),
}


class SceneAssetsNotFound(RuntimeError):
    """The `robel` wheel, which carries the D'Claw scene files, is not installed."""


def robel_root() -> pathlib.Path:
    """Returns the folder of the installed `robel` package, without importing it."""
    spec = importlib.util.find_spec("robel")
    if spec is None or not spec.submodule_search_locations:
        raise SceneAssetsNotFound(
            "The D'Claw scene files come from the `robel` wheel, which is not installed. "
            "Install it without its dependencies: pip install --no-deps robel==0.1.2"
        )
    root = pathlib.Path(next(iter(spec.submodule_search_locations)))
    if not (root / ROBEL_SCENE).is_file():
        raise SceneAssetsNotFound(
            f"`robel` is installed at {root} but {ROBEL_SCENE} is missing; reinstall it: "
            "pip install --force-reinstall --no-deps robel==0.1.2"
        )
    return root


def _parse(path: pathlib.Path) -> ET.Element:
    """Parses an MJCF file, dropping an XML declaration that follows a comment."""
    text = path.read_text()
    start = text.find("<?xml")
    if start >= 0:
        end = text.index("?>", start) + 2
        text = text[:start] + text[end:]
    return ET.fromstring(text)


def _expand_includes(element: ET.Element, folder: pathlib.Path, skip: tuple[str, ...]) -> None:
    """Replaces each <include file=...> below `element` by the included file's children."""
    for index, child in reversed(list(enumerate(element))):
        if child.tag == "include":
            path = (folder / child.attrib["file"]).resolve()
            element.remove(child)
            if path.name in skip:
                continue
            included = _parse(path)
            _expand_includes(included, path.parent, skip)
            for offset, grandchild in enumerate(included):
                element.insert(index + offset, grandchild)
        else:
            _expand_includes(child, folder, skip)


@dataclass(frozen=True)
class CameraPose:
    """A fixed camera looking at a point: position and target in metres (world frame).

    up: the direction that appears upward in the image (it is made perpendicular to the line
    of sight); the world z by default. A camera placed from measured extrinsics passes its own,
    so that a rolled real camera is rolled in the simulation too."""

    pos_m: tuple[float, float, float]
    lookat_m: tuple[float, float, float]
    fovy_deg: float
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class SceneLayout:
    """What we add to ROBEL's scene: the two cameras and where the goal marker floats.

    agent_camera: the camera the agent sees through (rendered with the light visual model).
    view_camera: a third-person camera for videos (rendered with ROBEL's meshes).
    goal_marker_radius_m, goal_marker_height_m: the marker's distance from the valve axis and
        height above the floor. It floats beside the valve (visual only, nothing collides with
        it) outside the arms' reach and high enough that the valve never hides it from the camera.
    valve_marker: what shows the valve's angle, one of VALVE_MARKERS: "prong" paints one of its
        three prongs red; "stripe" (before 2026-12) draws a thin red stripe on that prong's top.
        The valve's three prongs look alike every 120 degrees, so the marker alone tells the
        goal from the two angles 120 degrees off it.
    """

    agent_camera: CameraPose
    view_camera: CameraPose
    goal_marker_radius_m: float
    goal_marker_height_m: float
    valve_marker: str

    def __post_init__(self) -> None:
        if self.valve_marker not in VALVE_MARKERS:
            raise ConfigError(f"backend.valve_marker={self.valve_marker!r} is not one of: {', '.join(VALVE_MARKERS)}")


def _xyaxes(pos: np.ndarray, lookat: np.ndarray, up: np.ndarray) -> str:
    """The MJCF `xyaxes` of a camera at `pos` looking at `lookat`, with `up` upward in its image."""
    forward = lookat - pos
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return " ".join(f"{v:.6f}" for v in (*right, *up))


def _add_camera(worldbody: ET.Element, name: str, pose: CameraPose) -> None:
    pos = np.asarray(pose.pos_m, dtype=float)
    ET.SubElement(
        worldbody,
        "camera",
        name=name,
        pos=" ".join(f"{v:.6f}" for v in pos),
        xyaxes=_xyaxes(pos, np.asarray(pose.lookat_m, dtype=float), np.asarray(pose.up, dtype=float)),
        fovy=f"{pose.fovy_deg:.3f}",
    )


def build_valve_scene_xml(layout: SceneLayout) -> str:
    """Returns the MJCF of ROBEL's dclaw3xh_valve3 scene with our cameras, markers and colours."""
    root_dir = robel_root()
    scene = root_dir / ROBEL_SCENE
    root = _parse(scene)
    _expand_includes(root, scene.parent, skip=(OVERLAY_INCLUDE,))

    for compiler in root.iter("compiler"):
        for key in ("meshdir", "texturedir"):
            if key in compiler.attrib:
                compiler.attrib[key] = str((scene.parent / compiler.attrib[key]).resolve())

    # Expanded includes leave several <worldbody> sections (MJCF merges them); ours is the last.
    worldbody = root.findall("worldbody")[-1]

    # The goal marker: ROBEL's `target` body holds a thin capsule at z=0, under the valve, where
    # no camera sees it. We make it a mocap body (its pose is state, set per episode) and give it
    # a marker beside the valve, pointing at the goal angle.
    target = next(b for b in root.iter("body") if b.get("name") == GOAL_BODY)
    target.set("mocap", "true")
    for site in list(target):
        target.remove(site)
    ET.SubElement(
        target,
        "geom",
        name="goal_marker",
        type="box",
        size="0.025 0.008 0.003",
        pos=f"{layout.goal_marker_radius_m:.4f} 0 {layout.goal_marker_height_m:.4f}",
        rgba="0.1 0.85 0.1 1",
        contype="0",
        conaffinity="0",
        group=str(MARKER_GROUP),
    )

    # The red marker shows the valve's angle in both visual models
    # (the valve points along +x of the world at angle 0, as ROBEL's `valve_mark` does).
    valve = next(b for b in root.iter("body") if b.get("name") == "valve")
    size, pos = VALVE_MARKERS[layout.valve_marker]
    ET.SubElement(
        valve,
        "geom",
        name="valve_marker",
        type="capsule",
        size=size,
        pos=pos,
        euler="1.5708 0 0",
        rgba="0.9 0.15 0.1 1",
        contype="0",
        conaffinity="0",
        group=str(MARKER_GROUP),
    )

    # The valve turns freely, as the real one does. ROBEL limits its hinge to +-2pi (its sim resets
    # set the angle outright), but our reset turns the valve the short way from wherever it is,
    # so the unwrapped angle wanders with the policy's turns; at that limit the valve met a stop
    # that reads -0.003 or +0.003 rad (126 of a three-goal run's 1,500 evaluation episodes ended there).
    valve_joint = next(j for j in root.iter("joint") if j.get("name") == VALVE_JOINT)
    valve_joint.set("limited", "false")
    valve_joint.attrib.pop("range", None)

    _add_camera(worldbody, AGENT_CAMERA, layout.agent_camera)
    _add_camera(worldbody, VIEW_CAMERA, layout.view_camera)
    return ET.tostring(root, encoding="unicode")


def load_valve_model(layout: SceneLayout, physics_timestep_s: float) -> mujoco.MjModel:
    """Compiles the valve scene (see `build_valve_scene_xml`) with the given physics step."""
    xml = build_valve_scene_xml(layout)
    model = mujoco.MjModel.from_xml_string(xml)
    model.opt.timestep = physics_timestep_s
    # Opaque colours for the collision primitives, which are the agent's visual model:
    # dark claw links, light valve; ROBEL draws them as translucent blue debug shapes.
    claw_body_ids = _claw_body_ids(model)
    for geom_id in range(model.ngeom):
        if model.geom_group[geom_id] != COLLISION_GROUP:
            continue
        model.geom_matid[geom_id] = -1
        on_claw = model.geom_bodyid[geom_id] in claw_body_ids
        model.geom_rgba[geom_id] = (0.25, 0.25, 0.3, 1.0) if on_claw else (0.95, 0.95, 0.9, 1.0)
    return model


def _claw_body_ids(model: mujoco.MjModel) -> set[int]:
    """Bodies of the claw: the subtree under ROBEL's `dClaw` body."""
    root_id = model.body("dClaw").id
    ids = set()
    for body_id in range(model.nbody):
        walk = body_id
        while walk not in (0, root_id):
            walk = model.body_parentid[walk]
        if walk == root_id:
            ids.add(body_id)
    return ids
