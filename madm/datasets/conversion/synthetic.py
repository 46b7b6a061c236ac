"""Synthetic street-scene datasets in the real on-disk formats, with ground truth.

Small stand-ins for Cityscapes (labelled RGB source) and the three MADM targets,
for smoke tests, demos and debugging without the real data. Every image comes
from one procedural street scene: sky, buildings and walls on the horizon,
road / sidewalk / terrain on the ground plane, and perspective-scaled cars,
trucks, buses, bicycles, persons, poles with traffic signs and lights, trees
and fences. Layout, horizon, vanishing point, object counts, sizes and positions
are random per image, so position alone does not give the class.

The modality gap is real by construction:

* **source RGB**: class-typical colours and textures (grey asphalt with lane
  marks, facades with windows, blotchy green vegetation, blue sky, ...), plus
  two cues it shares with the targets: aerial perspective (surfaces fade toward
  a bright haze with distance, so brightness rises with depth as in the depth
  target) and darkened occlusion contours (the boundaries events fire on).
* **depth** (DELIVER-like): a rendering of the scene geometry only (ground-plane
  depth, objects with surface relief: kerbs, rough grass and foliage, rounded cars and
  persons, receding facades) in CARLA's log encoding
  ``clip(1 + ln(d / 1000 m) / 5.70378, 0, 1) * 255`` (data-formats.md §3.2): near
  is dark, sky white; gray, no colour or texture.
* **infrared** (FMB-like): per-class heat (persons and cars hot, sky cold) with
  per-instance jitter, sensor noise and blur; gray.
* **events** (DSEC-like): each label window renders a class-independent gray
  world (random gray per instance, one surface texture amplitude for every class,
  a featureless sky), moves it (forward ego motion with depth parallax, a camera
  pan, independently moving cars, persons and bicycles) and feeds the frames to
  :func:`.event_simulator.simulate_events`. Events therefore mark moving edges
  and textured surfaces in proportion to their image motion (dense on the near
  ground, sparse far away), never class colour.

What is written below ``out_root`` (formats as data-formats.md §1, §3, §4, §5)::

    cityscapes/leftImg8bit/train/<city>/<city>_<seq:06d>_000019_leftImg8bit.png   RGB
    cityscapes/gtFine/train/<city>/<city>_<seq:06d>_000019_gtFine_labelTrainIds.png  L, 0..18, 255
    DELIVER/depth/<cond>/<split>/MAP_<m>_point<k>/<frame:06d>_depth_front.png       RGB gray
    DELIVER/semantic/<cond>/<split>/MAP_<m>_point<k>/<frame:06d>_semantic_front.png R = id + 1
    FMB/<split>/{Infrared,Visible,Label}/<n:05d>.png            L / RGB / L 0..14 (1-based n)
    DSEC/events/<split>/<seq>/events/left/{events.h5,rectify_map.h5}   Blosc/ZSTD, 640x480
    DSEC/semantic/<split>/<seq>/11classes/<i:06d>.png + <seq>_semantic_timestamps.txt  640x440
    DSEC/69mask_{train,test}_edges/<seq>/<i:06d>.png            converted frames (i >= 1)
    DSEC/test_semantic_labels/<seq>/11classes/<i:06d>.png        MADM's test-label layout

``<split>`` is ``train``/``test``. DSEC windows are independent scene clips: label
``i`` shows scene ``i`` and window ``[ts[i-1], ts[i])`` holds that scene's
motion. The rectify map is the identity (sensor frame = rectified frame).

Everything is deterministic given ``seed`` (one RNG per image, seeded by
``(seed, domain, split, index)``), written atomically, and existing files are
kept, so an interrupted run resumes.
"""
import os
import os.path as osp
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np
from mmengine.logging import print_log

from madm.utils.atomic_io import atomic_write_image, atomic_write_text
from .dsec_events import LABEL_HEIGHT, SENSOR_HEIGHT, SENSOR_WIDTH, convert_dsec_events
from .event_representations import Representation, identity_rectify_map
from .event_simulator import simulate_events, write_events_h5, write_rectify_map

Modality = Literal['depth', 'infrared', 'event']

# Cityscapes trainIds (data-formats.md §5)
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON,
 RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)
IGNORE = 255

# Cityscapes 19 -> DSEC 11 (data-formats.md §1.6)
CS19_TO_DSEC11 = (5, 6, 1, 9, 2, 4, 10, 10, 7, 7, 0, 3, 3, 8, 8, 8, 8, 8, 8)
# Cityscapes 19 -> DELIVER 25 (0-based; stored +1 in the PNG's red channel, §3.3)
CS19_TO_DELIVER25 = (6, 7, 0, 10, 1, 4, 17, 11, 8, 21, 12, 3, 3, 9, 24, 23, 19, 22, 22)
# Cityscapes 19 -> FMB 15 (0 = unlabeled; wall and fence have no FMB class, §4)
CS19_TO_FMB15 = (1, 2, 3, 0, 0, 14, 4, 5, 6, 6, 7, 8, 8, 9, 10, 11, 0, 12, 13)

# Typical RGB per class (source domain only)
_CLASS_RGB = np.array([
    (88, 86, 92), (160, 148, 152), (150, 120, 100), (130, 128, 140), (140, 110, 80),
    (120, 120, 125), (40, 40, 40), (230, 200, 30), (60, 120, 40), (130, 150, 80),
    (110, 160, 220), (150, 60, 70), (150, 60, 70), (40, 60, 150), (70, 70, 110),
    (200, 160, 40), (80, 100, 100), (40, 40, 150), (150, 30, 40)], np.float32)
_CLASS_TEXTURE = np.array(  # amplitude of the per-class texture (RGB levels)
    [8, 10, 12, 10, 14, 4, 4, 4, 40, 20, 3, 15, 15, 6, 6, 6, 6, 6, 6], np.float32)
# Typical infrared level per class (0..255): people and vehicles are hot, the sky cold
_CLASS_HEAT = np.array(
    [120, 105, 95, 100, 90, 110, 125, 100, 70, 85, 25, 215, 210, 185, 175, 175, 170, 160, 120],
    np.float32)

_DOMAIN_IDS = {'cityscapes': 0, 'deliver': 1, 'fmb': 2, 'dsec': 3}
_SPLIT_IDS = {'train': 0, 'test': 1}
_CAMERA_HEIGHT_M = 1.5
_FOCAL_FRACTION = 0.9  # focal length in pixels per image width
# Depth relief (add_depth_relief): what a depth sensor sees of each surface beyond the flat
# scene model. Kerbs raise the sidewalk; grass and foliage are rough (log-depth amplitude);
# cars, persons, poles and trees are rounded (depth rises toward their left and right edge by
# up to this share of their half-width); facades recede toward the vanishing point.
_KERB_HEIGHT_M = 0.15
_ROUGHNESS = {TERRAIN: (0.12, 3), VEGETATION: (0.25, 2)}  # class: (amplitude, noise cell px)
_ROUNDNESS = {CAR: 0.6, BUS: 0.6, TRUCK: 0.6, PERSON: 1.0, POLE: 1.0, VEGETATION: 1.0}
_FACADE_RECESSION = 0.8  # relative depth increase per image width from the vanishing point
_MAX_DEPTH_M = 1000.0
# Object distances (metres): large vehicles keep further away so that none fills the view
_MIN_OBJECT_DEPTH_M = dict(car=8.0, person=6.0, pole=6.0, tree=10.0, fence=8.0, bicycle=7.0,
                           bus=16.0, truck=16.0)
_MAX_OBJECT_DEPTH_M = 40.0
# Aerial perspective of the RGB source: surfaces fade toward a bright haze with distance
# (1 - exp(-d / _HAZE_DISTANCE_M)), so RGB brightness rises with depth as the depth target's
# gray does: a geometry cue shared by both domains, under the source's class colours.
_HAZE_DISTANCE_M = 60.0
_HAZE_RGB = np.array((205, 210, 215), np.float32)
# Occlusion contours of the RGB source are darkened by this factor: object outlines are the
# cue that RGB shares with events (which fire on moving boundaries) and depth (steps).
_CONTOUR_SHADE = 0.6
# Event world: class-independent surface texture (log-intensity amplitude) that fires events
# where the surface moves in the image, so event density follows motion and parallax
# (near ground dense, far buildings sparse); the sky is featureless, as in real recordings.
_EVENT_TEXTURE = 0.2
_EVENT_TEXTURE_CELL = 4
_DSEC_T0_US = 49_599_300_000  # a realistic absolute DSEC time (data-formats.md §1.4)
_DSEC_FRAME_US = 50_000  # 20 Hz labels
_DSEC_SUBFRAMES = 6  # rendered frames per window for the simulator


@dataclass
class StreetScene:
    """One procedural scene.

    Attributes:
        instance (np.ndarray): ``(H, W)`` int32 instance id per pixel (0 = sky).
        classes (np.ndarray): ``(K,)`` Cityscapes trainId of each instance.
        depth (np.ndarray): ``(H, W)`` float32 metres (sky = 1000).
        velocity (np.ndarray): ``(K,)`` independent horizontal image motion in
            px/s (0 for static instances).
        horizon (float): Horizon row.
        vanishing_x (float): Column of the vanishing point.
    """

    instance: np.ndarray
    classes: np.ndarray
    depth: np.ndarray
    velocity: np.ndarray
    horizon: float
    vanishing_x: float

    @property
    def label(self) -> np.ndarray:
        """``(H, W)`` uint8 Cityscapes trainIds."""
        return self.classes[self.instance].astype(np.uint8)


class _SceneBuilder:
    """Paints instances into an id map with the painter's algorithm."""

    def __init__(self, height: int, width: int, rng: np.random.Generator) -> None:
        self.h, self.w, self.rng = height, width, rng
        self.instance = np.zeros((height, width), np.int32)
        self.classes = [SKY]
        self.depths = [_MAX_DEPTH_M]  # NaN = ground plane (depth from the row)
        self.velocity = [0.0]
        self.focal = _FOCAL_FRACTION * width
        self.horizon = rng.uniform(0.38, 0.52) * height
        self.vx = rng.uniform(0.35, 0.65) * width

    def new(self, cls: int, depth: float, velocity: float = 0.0) -> int:
        self.classes.append(cls)
        self.depths.append(depth)
        self.velocity.append(velocity)
        return len(self.classes) - 1

    def ground_depth(self, row: float) -> float:
        return float(np.clip(_CAMERA_HEIGHT_M * self.focal / max(row - self.horizon, 1e-3),
                             1.0, _MAX_DEPTH_M))

    def rect(self, inst: int, x0: float, y0: float, x1: float, y1: float) -> None:
        cv2.rectangle(self.instance, (int(round(x0)), int(round(y0))),
                      (max(int(round(x1)), int(round(x0))), max(int(round(y1)), int(round(y0)))),
                      inst, -1)

    def ellipse(self, inst: int, cx: float, cy: float, rx: float, ry: float) -> None:
        cv2.ellipse(self.instance, (int(round(cx)), int(round(cy))),
                    (max(int(round(rx)), 1), max(int(round(ry)), 1)), 0, 0, 360, inst, -1)

    def polygon(self, inst: int, points: list[tuple[float, float]]) -> None:
        cv2.fillPoly(self.instance, [np.round(np.array(points)).astype(np.int32)], inst)

    def road_span(self, row: float, outer: float) -> tuple[float, float]:
        dy = row - self.horizon
        return self.vx - self.road_left * outer * dy, self.vx + self.road_right * outer * dy

    def build(self) -> StreetScene:
        h, w, rng = self.h, self.w, self.rng
        # 1. ground plane: terrain, sidewalks, road (depth from the row)
        self.road_left, self.road_right = rng.uniform(0.5, 1.4, 2)
        self.sidewalk_scale = rng.uniform(1.4, 2.2)
        self.polygon(self.new(TERRAIN, np.nan), [(0, self.horizon + 1), (w, self.horizon + 1),
                                                  (w, h), (0, h)])
        for outer, cls in ((self.sidewalk_scale, SIDEWALK), (1.0, ROAD)):
            left, right = self.road_span(h + 4 * h, outer)
            self.polygon(self.new(cls, np.nan), [(self.vx - 2, self.horizon + 1),
                                                 (self.vx + 2, self.horizon + 1),
                                                 (right, 5 * h), (left, 5 * h)])
        # 2. skyline on the horizon: buildings with gaps, walls, far trees
        x = -rng.uniform(0, 0.1) * w
        while x < w:
            bw = rng.uniform(0.08, 0.3) * w
            if rng.random() > 0.2:
                base = self.horizon + rng.uniform(0.01, 0.05) * h
                top = rng.uniform(0.03, max(0.04, self.horizon / h - 0.08)) * h
                self.rect(self.new(BUILDING, self.ground_depth(base)), x, top, x + bw, base)
                if rng.random() < 0.3:
                    depth = self.ground_depth(base) * 0.9
                    wall_h = 2.5 * self.focal / depth
                    self.rect(self.new(WALL, depth), x, base - wall_h, x + bw * rng.uniform(0.4, 1), base)
            x += bw
        for _ in range(rng.integers(0, 4)):
            base = self.horizon + rng.uniform(0.01, 0.06) * h
            depth = self.ground_depth(base)
            r = rng.uniform(3, 7) * self.focal / depth
            self.ellipse(self.new(VEGETATION, depth), rng.uniform(0, w), base - r, r * 1.2, r)
        # 3. objects, far to near
        objects = []
        for kind, low, high in (('car', 1, 6), ('person', 0, 5), ('pole', 1, 4), ('tree', 0, 3),
                                ('fence', 0, 2), ('bicycle', 0, 2), ('bus', 0, 1), ('truck', 0, 1)):
            for _ in range(rng.integers(low, high + 1)):
                # Log-uniform distance: most objects are far and small, as in traffic. The
                # minimum keeps any object from filling the view (a bus 3 m away would
                # turn a whole frame, and its label, into one class).
                depth = np.exp(rng.uniform(np.log(_MIN_OBJECT_DEPTH_M[kind]),
                                           np.log(_MAX_OBJECT_DEPTH_M)))
                objects.append((self.horizon + _CAMERA_HEIGHT_M * self.focal / depth, kind))
        for base, kind in sorted(objects, key=lambda o: o[0]):
            self._object(kind, base)
        return StreetScene(
            instance=self.instance, classes=np.array(self.classes, np.uint8),
            depth=self._depth_map(), velocity=np.array(self.velocity, np.float32),
            horizon=self.horizon, vanishing_x=self.vx)

    def _depth_map(self) -> np.ndarray:
        depths = np.array(self.depths, np.float32)
        rows = np.arange(self.h, dtype=np.float32)[:, None]
        ground = np.clip(_CAMERA_HEIGHT_M * self.focal / np.maximum(rows - self.horizon, 1e-3),
                         1.0, _MAX_DEPTH_M)
        ground = np.where(rows > self.horizon, ground, _MAX_DEPTH_M)
        per_pixel = depths[self.instance]
        return np.where(np.isnan(per_pixel), np.broadcast_to(ground, per_pixel.shape),
                        per_pixel).astype(np.float32)

    def _object(self, kind: str, base: float) -> None:
        rng = self.rng
        depth = self.ground_depth(base)
        s = self.focal / depth  # pixels per metre at this depth
        on_road = kind in ('car', 'bus', 'truck', 'bicycle')
        left, right = self.road_span(base, 1.0 if on_road else self.sidewalk_scale)
        if on_road:
            x = rng.uniform(left, right)
        else:  # on a sidewalk: beyond the road edge, either side
            road_l, road_r = self.road_span(base, 1.0)
            x = rng.uniform(left, road_l) if rng.random() < 0.5 else rng.uniform(road_r, right)
        if kind == 'car':
            length, height = rng.uniform(1.8, 4.5), rng.uniform(1.3, 1.7)
            inst = self.new(CAR, depth, rng.uniform(-8, 8) * s)
            self.rect(inst, x - length * s / 2, base - 0.6 * height * s, x + length * s / 2, base)
            self.rect(inst, x - length * s / 3, base - height * s, x + length * s / 3, base)
        elif kind in ('bus', 'truck'):
            length, height = rng.uniform(6, 11), rng.uniform(2.8, 3.4)
            inst = self.new(BUS if kind == 'bus' else TRUCK, depth, rng.uniform(-5, 5) * s)
            self.rect(inst, x - length * s / 2, base - height * s, x + length * s / 2, base)
        elif kind == 'bicycle':
            inst = self.new(BICYCLE, depth, rng.uniform(-5, 5) * s)
            r = 0.35 * s
            self.ellipse(inst, x - 0.55 * s, base - r, r, r)
            self.ellipse(inst, x + 0.55 * s, base - r, r, r)
            self.rect(inst, x - 0.55 * s, base - 2 * r, x + 0.55 * s, base - 1.6 * r)
        elif kind == 'person':
            height = rng.uniform(1.5, 1.9)
            inst = self.new(PERSON, depth, rng.uniform(-1.5, 1.5) * s)
            self.rect(inst, x - 0.25 * s, base - 0.85 * height * s, x + 0.25 * s, base)
            self.ellipse(inst, x, base - 0.92 * height * s, 0.12 * s, 0.12 * s)
        elif kind == 'pole':
            height = rng.uniform(4, 7)
            self.rect(self.new(POLE, depth), x - 0.08 * s, base - height * s, x + 0.08 * s, base)
            top = base - height * s
            if rng.random() < 0.5:
                inst = self.new(SIGN, depth * 0.99)
                if rng.random() < 0.5:
                    self.rect(inst, x - 0.35 * s, top, x + 0.35 * s, top + 0.7 * s)
                else:
                    self.ellipse(inst, x, top + 0.35 * s, 0.35 * s, 0.35 * s)
            elif rng.random() < 0.5:
                self.rect(self.new(LIGHT, depth * 0.99), x - 0.18 * s, top, x + 0.18 * s,
                          top + 0.9 * s)
        elif kind == 'tree':
            crown = rng.uniform(1.5, 3.0)
            inst = self.new(VEGETATION, depth)
            self.rect(inst, x - 0.15 * s, base - 3 * s, x + 0.15 * s, base)
            self.ellipse(inst, x, base - 3 * s - crown * s * 0.8, crown * s, crown * s)
        elif kind == 'fence':
            length = rng.uniform(3, 10)
            self.rect(self.new(FENCE, depth), x - length * s / 2, base - 1.2 * s,
                      x + length * s / 2, base)


def generate_scene(height: int, width: int, rng: np.random.Generator) -> StreetScene:
    """Draw a random street scene.

    Args:
        height (int): Image height ``H``.
        width (int): Image width ``W``.
        rng (np.random.Generator): Source of all randomness.

    Returns:
        StreetScene: Instances, classes, depth and motion.
    """
    return _SceneBuilder(height, width, rng).build()


def _smooth_noise(shape: tuple[int, int], cell: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-ish low-frequency noise: random cells upsampled bilinearly."""
    small = rng.standard_normal((max(shape[0] // cell, 2), max(shape[1] // cell, 2)))
    return cv2.resize(small.astype(np.float32), (shape[1], shape[0]),
                      interpolation=cv2.INTER_LINEAR)


def render_rgb(scene: StreetScene, rng: np.random.Generator) -> np.ndarray:
    """Source-domain rendering: class-typical colours and textures, haze, contours.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB.
    """
    h, w = scene.instance.shape
    classes = scene.classes
    colours = _CLASS_RGB[classes] + rng.normal(0, 12, (len(classes), 3)).astype(np.float32)
    vehicles = np.isin(classes, (CAR, TRUCK, BUS))
    colours[vehicles] = np.where(rng.random(vehicles.sum())[:, None] < 0.5,
                                 rng.uniform(20, 230, (vehicles.sum(), 3)), colours[vehicles])
    label = scene.label
    image = colours[scene.instance]
    texture = 0.6 * _smooth_noise((h, w), 8, rng) + 0.4 * rng.standard_normal((h, w)).astype(np.float32)
    image += (_CLASS_TEXTURE[label] * texture)[..., None]
    rows, cols = np.mgrid[0:h, 0:w]
    cell = max(w // 64, 3)
    windows = (label == BUILDING) & ((rows // cell) % 2 == 1) & ((cols // cell) % 3 != 0)
    image[windows] *= 0.55
    sky = label == SKY
    image[sky] += (40 * rows[sky] / h)[:, None].astype(np.float32)
    centre = ((label == ROAD) & (np.abs(cols - scene.vanishing_x) < 1 + 0.01 * (rows - scene.horizon))
              & ((rows // max(h // 24, 2)) % 2 == 0))
    image[centre] = 235
    haze = np.where(sky, 0.0, 1.0 - np.exp(-scene.depth / _HAZE_DISTANCE_M)).astype(np.float32)
    image = image * (1.0 - haze[..., None]) + _HAZE_RGB * haze[..., None]
    image[instance_contours(scene.instance)] *= _CONTOUR_SHADE
    return np.clip(image, 0, 255).astype(np.uint8)


def instance_contours(instance: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose right or lower neighbour belongs to another instance."""
    contour = np.zeros(instance.shape, bool)
    contour[:, :-1] |= instance[:, :-1] != instance[:, 1:]
    contour[:-1] |= instance[:-1] != instance[1:]
    return contour


def add_depth_relief(scene: StreetScene, rng: np.random.Generator) -> StreetScene:
    """The scene with the surface relief a depth sensor sees added to its depth.

    The scene model is flat: the ground is one plane and every object a constant-depth
    cut-out, so in depth only position and outline tell classes apart. Real depth also
    carries each surface's shape: the sidewalk is a kerb above the road, grass and
    foliage are rough, cars, persons, poles and tree crowns are rounded, and facades
    along the street recede toward the vanishing point. Only the depth target is
    rendered from this; the RGB source and the events keep the flat scene.

    Args:
        scene (StreetScene): A scene from :func:`generate_scene`.
        rng (np.random.Generator): Draws the roughness.

    Returns:
        StreetScene: The same scene with the relief in ``depth`` (sky unchanged).
    """
    h, w = scene.instance.shape
    label = scene.label
    depth = scene.depth.copy()
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    focal = _FOCAL_FRACTION * w
    kerb = (label == SIDEWALK) & (rows > scene.horizon)
    depth[kerb] = np.clip((_CAMERA_HEIGHT_M - _KERB_HEIGHT_M) * focal
                          / (rows[kerb] - scene.horizon), 1.0, _MAX_DEPTH_M)
    for cls, (amplitude, cell) in _ROUGHNESS.items():
        rough = label == cls
        depth[rough] *= np.exp(amplitude * _smooth_noise((h, w), cell, rng)[rough])
    for inst in np.flatnonzero(np.isin(scene.classes, list(_ROUNDNESS))):
        mask = scene.instance == inst
        if not mask.any():
            continue
        x = cols[mask]
        centre, half = x.mean(), max((x.max() - x.min()) / 2, 1.0)
        half_m = half * depth[mask].mean() / focal
        depth[mask] += (_ROUNDNESS[int(scene.classes[inst])] * half_m
                        * ((x - centre) / half) ** 2)
    facade = label == BUILDING
    depth[facade] *= 1.0 + _FACADE_RECESSION * np.abs(cols[facade] - scene.vanishing_x) / w
    return replace(scene, depth=np.minimum(depth, _MAX_DEPTH_M).astype(np.float32))


def render_depth(scene: StreetScene) -> np.ndarray:
    """DELIVER-style depth PNG: CARLA log encoding, near dark, gray (data-formats.md §3.2).

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8, equal channels.
    """
    value = np.clip(1.0 + np.log(scene.depth / _MAX_DEPTH_M) / 5.70378, 0.0, 1.0) * 255.0
    gray = np.round(value).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def render_infrared(scene: StreetScene, rng: np.random.Generator) -> np.ndarray:
    """FMB-style thermal image: per-class heat, per-instance jitter, noise and blur.

    Returns:
        np.ndarray: ``(H, W)`` uint8 (bright = hot).
    """
    h, w = scene.instance.shape
    heat = _CLASS_HEAT[scene.classes] + rng.normal(0, 12, len(scene.classes)).astype(np.float32)
    image = heat[scene.instance] + 6 * _smooth_noise((h, w), 16, rng)
    image = cv2.GaussianBlur(image, (0, 0), 1.0)
    image += rng.normal(0, 4, (h, w)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_gray_world(scene: StreetScene, rng: np.random.Generator) -> np.ndarray:
    """Class-independent intensities for the event simulator, in [0, 1].

    Every instance gets a uniformly random gray level, whatever its class, times
    a random surface texture of the same amplitude for every class (none on the
    featureless sky): intensity carries no class signal, only edges and motion do.

    Returns:
        np.ndarray: ``(H, W)`` float32.
    """
    h, w = scene.instance.shape
    levels = rng.uniform(0.25, 0.75, len(scene.classes)).astype(np.float32)
    # One texture amplitude for every class (no class signal); the sky has none.
    texture = _EVENT_TEXTURE * _smooth_noise((h, w), _EVENT_TEXTURE_CELL, rng)
    texture[scene.label == SKY] = 0.0
    return np.clip(levels[scene.instance] * np.exp(texture), 0.05, 1.0)


def render_motion_frames(scene: StreetScene, intensity: np.ndarray, offsets_s: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
    """Frames of the scene ``offsets_s`` seconds *before* the labelled instant.

    Forward ego motion at ``v`` m/s shrinks the scene toward the vanishing point
    by ``(Z + v*dt) / Z`` per pixel (depth parallax), a camera pan adds a uniform
    shift and movers add their own velocity. Each frame is one backward warp.

    Args:
        scene (StreetScene): The scene at the labelled instant.
        intensity (np.ndarray): ``(H, W)`` float32 rendering of it.
        offsets_s (np.ndarray): ``(T,)`` seconds before the label (>= 0).
        rng (np.random.Generator): Draws the ego speed and the pan rate.

    Returns:
        np.ndarray: ``(T, H, W)`` float32 frames.
    """
    h, w = intensity.shape
    speed = rng.uniform(2.0, 6.0)
    pan = rng.uniform(-40.0, 40.0)
    cols, rows = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    velocity = scene.velocity[scene.instance]
    frames = []
    for dt in offsets_s:
        scale = (scene.depth + speed * dt) / scene.depth
        map_x = scene.vanishing_x + (cols - scene.vanishing_x) * scale + (pan + velocity) * dt
        map_y = scene.horizon + (rows - scene.horizon) * scale
        frames.append(cv2.remap(intensity, map_x.astype(np.float32), map_y.astype(np.float32),
                                cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


def _rng(seed: int, domain: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _DOMAIN_IDS[domain], _SPLIT_IDS[split], index])


def _write(path: str, image: np.ndarray) -> bool:
    """Write unless it exists (resume); returns whether it wrote."""
    if osp.isfile(path):
        return False
    atomic_write_image(path, image)
    return True


def _todo(paths: list[str]) -> bool:
    return not all(osp.isfile(p) for p in paths)


_CITIES = ('aachen', 'bochum', 'bremen', 'cologne', 'darmstadt')


def generate_cityscapes(out_root: str, num_images: int, size: tuple[int, int] = (512, 256),
                        seed: int = 0) -> str:
    """Cityscapes-like labelled RGB source (train split, 19 trainIds + 255).

    Args:
        out_root (str): Dataset root (``.../cityscapes``).
        num_images (int): Images to generate.
        size (tuple[int, int]): ``(W, H)``; Cityscapes is 2:1. Defaults to (512, 256).
        seed (int): Global seed. Defaults to 0.

    Returns:
        str: ``out_root``.
    """
    width, height = size
    for i in range(num_images):
        city = _CITIES[i % len(_CITIES)]
        stem = f'{city}_{i // len(_CITIES):06d}_000019'
        img = osp.join(out_root, 'leftImg8bit', 'train', city, f'{stem}_leftImg8bit.png')
        lab = osp.join(out_root, 'gtFine', 'train', city, f'{stem}_gtFine_labelTrainIds.png')
        if not _todo([img, lab]):
            continue
        rng = _rng(seed, 'cityscapes', 'train', i)
        scene = generate_scene(height, width, rng)
        _write(lab, scene.label)
        _write(img, render_rgb(scene, rng))
    return out_root


_CONDITIONS = ('cloud', 'fog', 'night', 'rain', 'sun')
_MAPS = {'train': (1, 2, 3, 6), 'test': (7, 10)}


def generate_deliver_depth(out_root: str, num_train: int, num_test: int,
                           size: tuple[int, int] = (256, 256), seed: int = 0) -> str:
    """DELIVER-like depth target: ``depth/`` gray PNGs and ``semantic/`` id+1-in-red PNGs.

    Args:
        out_root (str): Dataset root (``.../DELIVER``).
        num_train (int): Train images (labels written too, as in DELIVER).
        num_test (int): Test images.
        size (tuple[int, int]): ``(W, H)``; DELIVER is square. Defaults to (256, 256).
        seed (int): Global seed. Defaults to 0.

    Returns:
        str: ``out_root``.
    """
    width, height = size
    to_deliver = np.array(CS19_TO_DELIVER25, np.uint8) + 1
    for split, count in (('train', num_train), ('test', num_test)):
        maps = _MAPS[split]
        for i in range(count):
            cond = _CONDITIONS[i % len(_CONDITIONS)]
            scene_dir = f'MAP_{maps[(i // 50) % len(maps)]}_point{100 + (i // 10) % 5}'
            frame = f'{(i + 1) * 50:06d}'
            depth = osp.join(out_root, 'depth', cond, split, scene_dir, f'{frame}_depth_front.png')
            sem = osp.join(out_root, 'semantic', cond, split, scene_dir,
                           f'{frame}_semantic_front.png')
            if not _todo([depth, sem]):
                continue
            rng = _rng(seed, 'deliver', split, i)
            scene = add_depth_relief(generate_scene(height, width, rng), rng)
            red = to_deliver[scene.label]
            _write(sem, np.stack([red, np.zeros_like(red), np.zeros_like(red)], axis=-1))
            _write(depth, render_depth(scene))
    return out_root


def generate_fmb_infrared(out_root: str, num_train: int, num_test: int,
                          size: tuple[int, int] = (320, 240), seed: int = 0) -> str:
    """FMB-like infrared target: ``<split>/{Infrared,Visible,Label}/<n:05d>.png``.

    Args:
        out_root (str): Dataset root (``.../FMB``).
        num_train (int): Train images (FMB ships labels for both splits).
        num_test (int): Test images; numbered after the train ones.
        size (tuple[int, int]): ``(W, H)``; FMB is 4:3. Defaults to (320, 240).
        seed (int): Global seed. Defaults to 0.

    Returns:
        str: ``out_root``.
    """
    width, height = size
    to_fmb = np.array(CS19_TO_FMB15, np.uint8)
    for split, count, first in (('train', num_train, 1), ('test', num_test, num_train + 1)):
        for i in range(count):
            name = f'{first + i:05d}.png'
            paths = [osp.join(out_root, split, sub, name) for sub in ('Infrared', 'Visible', 'Label')]
            if not _todo(paths):
                continue
            rng = _rng(seed, 'fmb', split, i)
            scene = generate_scene(height, width, rng)
            _write(paths[2], to_fmb[scene.label])
            _write(paths[0], render_infrared(scene, rng))
            _write(paths[1], render_rgb(scene, rng))
    return out_root


def _dsec_sequences(split: str, num_windows: int, per_sequence: int) -> list[tuple[str, int]]:
    """``(name, windows)`` per sequence; a sequence of ``n`` windows has ``n + 1`` labels."""
    names, left, k = [], num_windows, 0
    while left > 0:
        n = min(per_sequence, left)
        names.append((f'synth_{split}_{k:02d}_a', n))
        left -= n
        k += 1
    return names


def generate_dsec_events(out_root: str, num_train: int, num_test: int, seed: int = 0,
                         windows_per_sequence: int = 50,
                         representation: Representation | None = 'edge',
                         contrast_threshold: float = 0.25) -> str:
    """DSEC-like events (real ``events.h5`` format) with 11-class labels, then MADM frames.

    Args:
        out_root (str): Dataset root (``.../DSEC``).
        num_train (int): Train label windows (``i >= 1``), split into sequences.
        num_test (int): Test label windows.
        seed (int): Global seed. Defaults to 0.
        windows_per_sequence (int): Windows per sequence. Defaults to 50.
        representation (Representation | None): Convert the events to
            ``69mask_{train,test}_edges`` with this representation; None keeps
            only the raw DSEC files. Defaults to 'edge' (MADM's).
        contrast_threshold (float): Simulator log-intensity threshold; higher
            gives fewer events. Defaults to 0.25.

    Returns:
        str: ``out_root``.
    """
    to_dsec = np.array(CS19_TO_DSEC11, np.uint8)
    offsets = np.linspace(_DSEC_FRAME_US, 0, _DSEC_SUBFRAMES)  # µs before the label, oldest first
    for split, count in (('train', num_train), ('test', num_test)):
        for k, (seq, windows) in enumerate(_dsec_sequences(split, count, windows_per_sequence)):
            ev_dir = osp.join(out_root, 'events', split, seq, 'events', 'left')
            sem_dir = osp.join(out_root, 'semantic', split, seq)
            t_offset = _DSEC_T0_US + k * 10**8 + _SPLIT_IDS[split] * 10**10
            timestamps = t_offset + 10_000 + _DSEC_FRAME_US * np.arange(windows + 1, dtype=np.int64)
            label_paths = [osp.join(sem_dir, '11classes', f'{i:06d}.png') for i in range(windows + 1)]
            test_paths = ([osp.join(out_root, 'test_semantic_labels', seq, '11classes',
                                    f'{i:06d}.png') for i in range(windows + 1)]
                          if split == 'test' else [])
            if not _todo(label_paths + test_paths + [osp.join(ev_dir, 'events.h5')]):
                continue
            chunks = []
            for i in range(windows + 1):
                rng = _rng(seed, 'dsec', split, k * 100_000 + i)
                scene = generate_scene(SENSOR_HEIGHT, SENSOR_WIDTH, rng)
                label = to_dsec[scene.label[:LABEL_HEIGHT]]
                _write(label_paths[i], label)
                if test_paths:
                    _write(test_paths[i], label)
                if i == 0:  # label 0 has no preceding window (data-formats.md §1.7)
                    continue
                frames = render_motion_frames(scene, render_gray_world(scene, rng),
                                              offsets / 1e6, rng)
                chunks.append(simulate_events(frames, timestamps[i] - offsets.astype(np.int64),
                                              contrast_threshold))
            x, y, t, p = (np.concatenate(c) for c in zip(*chunks))
            # a window's last event may land exactly on the label time: keep [ts[i-1], ts[i])
            t = np.minimum(t, np.repeat(timestamps[1:] - 1, [len(c[2]) for c in chunks]))
            write_rectify_map(osp.join(ev_dir, 'rectify_map.h5'),
                              identity_rectify_map(SENSOR_HEIGHT, SENSOR_WIDTH))
            atomic_write_text(osp.join(sem_dir, f'{seq}_semantic_timestamps.txt'),
                              '\n'.join(str(v) for v in timestamps) + '\n')
            write_events_h5(osp.join(ev_dir, 'events.h5'), x, y, t, p, t_offset)
    if representation is not None:
        for split in ('train', 'test'):
            events_root = osp.join(out_root, 'events', split)
            if osp.isdir(events_root):
                convert_dsec_events(events_root, osp.join(out_root, f'69mask_{split}_edges'),
                                    osp.join(out_root, 'semantic', split),
                                    representation=representation)
    return out_root


_TARGET_SIZES = {'depth': (256, 256), 'infrared': (320, 240)}
#: Bumped whenever the files a seed produces change (2: depth relief), so that a data folder
#: written by an older generator is not silently completed with images of another kind.
GENERATOR_VERSION = 2
_VERSION_FILE = 'synthetic_version.txt'


def check_generator_version(out_root: str) -> None:
    """Record :data:`GENERATOR_VERSION` in a new ``out_root``; refuse one from another version.

    Generation resumes by keeping existing files, so an older folder would mix two
    generators' images. The version file is written before any image, so an interrupted
    run still carries it.

    Raises:
        ValueError: ``out_root`` holds files from another (or an unrecorded) version.
    """
    path = osp.join(out_root, _VERSION_FILE)
    if osp.isfile(path):
        with open(path) as f:
            found = f.read().strip()
        if found == str(GENERATOR_VERSION):
            return
    elif not osp.isdir(out_root) or not os.listdir(out_root):
        atomic_write_text(path, f'{GENERATOR_VERSION}\n')
        return
    else:
        found = '1 (unrecorded: written before versions were)'
    raise ValueError(
        f'{out_root!r} was written by synthetic generator version {found}, this is version '
        f'{GENERATOR_VERSION}: its images differ. Delete the folder (for the demo: '
        f'`rm -rf {out_root}`, which also removes its tiny-sd prior) and run again.')


def generate_synthetic_dataset(out_root: str, modality: Modality, num_source: int = 200,
                               num_target_train: int = 200, num_target_test: int = 60,
                               seed: int = 0, source_size: tuple[int, int] = (512, 256),
                               target_size: tuple[int, int] | None = None,
                               event_representation: Representation | None = 'edge',
                               progress: Callable[[str], None] | None = None) -> dict[str, str]:
    """Generate the Cityscapes-like source and one target modality.

    Args:
        out_root (str): Output folder.
        modality (Modality): 'depth' (DELIVER), 'infrared' (FMB) or 'event' (DSEC).
        num_source (int): Source train images. Defaults to 200.
        num_target_train (int): Target train images / label windows. Defaults to 200.
        num_target_test (int): Target test images / label windows. Defaults to 60.
        seed (int): Global seed. Defaults to 0.
        source_size (tuple[int, int]): Source ``(W, H)``. Defaults to (512, 256).
        target_size (tuple[int, int] | None): Target ``(W, H)``; defaults to
            (256, 256) for depth and (320, 240) for infrared. Events are always
            DSEC's 640x480 sensor with 640x440 labels.
        event_representation (Representation | None): Conversion of the DSEC
            events into MADM frames; None skips it. Defaults to 'edge'.
        progress (Callable[[str], None] | None): Called with each stage's name.

    Returns:
        dict[str, str]: ``{'source': root, 'target': root}``.
    """
    if modality not in ('depth', 'infrared', 'event'):
        raise ValueError(f"modality must be 'depth', 'infrared' or 'event', got {modality!r}")
    if modality == 'event' and target_size not in (None, (SENSOR_WIDTH, SENSOR_HEIGHT)):
        raise ValueError(f'DSEC events are always {SENSOR_WIDTH}x{SENSOR_HEIGHT}; '
                         f'do not set target_size for modality=event (got {target_size})')
    check_generator_version(out_root)
    notify = progress or (lambda stage: None)
    notify('source')
    source = generate_cityscapes(osp.join(out_root, 'cityscapes'), num_source, source_size, seed)
    notify(modality)
    if modality == 'depth':
        target = generate_deliver_depth(osp.join(out_root, 'DELIVER'), num_target_train,
                                        num_target_test, target_size or _TARGET_SIZES['depth'], seed)
    elif modality == 'infrared':
        target = generate_fmb_infrared(osp.join(out_root, 'FMB'), num_target_train,
                                       num_target_test, target_size or _TARGET_SIZES['infrared'],
                                       seed)
    else:
        target = generate_dsec_events(osp.join(out_root, 'DSEC'), num_target_train,
                                      num_target_test, seed, representation=event_representation)
    print_log(f'synthetic {modality}: source at {source}, target at {target}', logger='current')
    return dict(source=source, target=target)
