"""Authoring tool for the free-hand stroke files beside it: shapes -> wobbly, open, hand-like strokes -> JSON.

python bench/freehand/author.py      # rewrites bench/freehand/<name>.json (seeded: the same files every run)

Each drawing below is composed by hand from lines, arcs and smooth curves in 512 x 512 canvas pixels (y down);
none is traced from a picture. `hand` turns a shape into what a mouse or pen gives the canvas: points a few pixels
apart, a slow wobble across the line, jitter, ends that overshoot or stop short, closed shapes that do not quite
close, and one brush width per stroke within the canvas brush's range.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).resolve().parent
SPACING = 5.0  # canvas px between points, as pointer events arrive at a drawing pace
Path2 = tuple[np.ndarray, bool]  # (n, 2) points and whether the shape is closed


def line(*points: tuple[float, float]) -> Path2:
    """A polyline through corner points."""
    return np.array(points, float), False


def loop(*points: tuple[float, float]) -> Path2:
    """A closed polygon through corner points."""
    return np.array(points, float), True


def arc(cx: float, cy: float, rx: float, ry: float, a0: float = 0, a1: float = 360, rot: float = 0) -> Path2:
    """An elliptic arc from angle a0 to a1 (degrees, 0 = right, 90 = down), the ellipse turned by rot degrees."""
    angles = np.radians(np.linspace(a0, a1, max(8, int(abs(a1 - a0) / 4))))
    x, y = rx * np.cos(angles), ry * np.sin(angles)
    turn = np.radians(rot)
    points = np.stack([cx + x * np.cos(turn) - y * np.sin(turn), cy + x * np.sin(turn) + y * np.cos(turn)], 1)
    return points, abs(a1 - a0) >= 360


def curve(*points: tuple[float, float], closed: bool = False) -> Path2:
    """A smooth Catmull-Rom curve through the points."""
    p = np.array(points, float)
    ext = np.concatenate([p[-1:], p, p[:2]]) if closed else np.concatenate([p[:1], p, p[-1:]])
    segments = len(p) if closed else len(p) - 1
    out = []
    for i in range(segments):
        p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
        for t in np.linspace(0, 1, 12, endpoint=False):
            out.append(
                0.5
                * (
                    2 * p1
                    + (-p0 + p2) * t
                    + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                    + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
                )
            )
    out.append(p[0] if closed else p[-1])
    return np.array(out), closed


def resample(points: np.ndarray, spacing: float) -> np.ndarray:
    """Points evenly spaced along the path's length."""
    lengths = np.r_[0, np.cumsum(np.hypot(*np.diff(points, axis=0).T))]
    n = max(2, int(round(lengths[-1] / spacing)) + 1)
    at = np.linspace(0, lengths[-1], n)
    return np.stack([np.interp(at, lengths, points[:, 0]), np.interp(at, lengths, points[:, 1])], 1)


def hand(shape: Path2, rng: np.random.Generator, wobble: float) -> np.ndarray:
    """A shape as a person draws it: start point moved on closed shapes, ends off by a few pixels, wobble, jitter."""
    points, closed = shape
    if closed:
        points = np.concatenate([points, points[:1]])
        points = resample(points, 1.0)[:-1]
        points = np.roll(points, -int(rng.integers(len(points))), axis=0)
        extra = int(rng.uniform(-0.04, 0.06) * len(points))  # a gap or an overlap where the loop meets itself
        points = np.concatenate([points, points[: max(extra, 0)]]) if extra >= 0 else points[: len(points) + extra]
    points = resample(points, SPACING)
    for end in (0, -1):  # overshoot or stop short at each end
        tangent = points[end] - points[1 if end == 0 else -2]
        tangent /= max(np.hypot(*tangent), 1e-6)
        reach = rng.uniform(-3, 7) if not closed else 0.0
        if reach > 0:
            tip = points[end] + tangent * reach
            points = np.concatenate([tip[None], points]) if end == 0 else np.concatenate([points, tip[None]])
        elif reach < 0 and len(points) > 4:
            points = points[1:] if end == 0 else points[:-1]
    length = np.r_[0, np.cumsum(np.hypot(*np.diff(points, axis=0).T))]
    direction = np.gradient(points, axis=0)
    normal = np.stack([-direction[:, 1], direction[:, 0]], 1) / np.maximum(np.hypot(*direction.T), 1e-6)[:, None]
    amplitude = wobble * min(1.0, length[-1] / 250.0 + 0.3)
    offset = sum(
        rng.uniform(0.3, 1.0) * amplitude * np.sin(2 * np.pi * f * length / max(length[-1], 1) + rng.uniform(0, 6.3))
        for f in (0.5, 1.3, 2.7)
    )
    points = points + normal * offset[:, None] + rng.normal(0, 0.35, points.shape)
    return np.clip(points, 2, 510)


def house():
    return [
        loop((130, 250), (130, 440), (382, 440), (382, 252)),
        line((108, 262), (255, 122), (402, 262)),
        line((225, 440), (225, 360), (285, 360), (285, 440)),
        loop((305, 290), (355, 290), (355, 332), (305, 332)),
        line((318, 175), (318, 118), (350, 118), (350, 205)),
    ]


def face():
    return [
        arc(256, 256, 170, 185),
        arc(195, 215, 20, 16),
        arc(317, 215, 20, 16),
        line((256, 240), (243, 295), (262, 300)),
        arc(256, 300, 85, 55, 25, 155),
        arc(195, 180, 30, 10, 200, 330),
        arc(317, 180, 30, 10, 210, 340),
    ]


def cat():
    return [
        arc(256, 300, 135, 120, -62, 242),
        line((196, 194), (160, 110), (146, 238)),
        line((316, 194), (352, 110), (366, 238)),
        arc(205, 280, 18, 22),
        arc(307, 280, 18, 22),
        loop((244, 318), (268, 318), (256, 332)),
        curve((226, 350), (240, 360), (256, 340), (272, 360), (286, 350)),
        line((200, 330), (110, 316)),
        line((200, 342), (112, 352)),
        line((312, 330), (402, 316)),
        line((312, 342), (400, 352)),
    ]


def dog():
    return [
        arc(256, 270, 120, 135, -50, 230),
        curve((180, 168), (120, 170), (88, 250), (118, 330), (160, 300), (170, 220)),
        curve((332, 168), (392, 170), (424, 250), (394, 330), (352, 300), (342, 220)),
        arc(215, 250, 12, 14),
        arc(297, 250, 12, 14),
        arc(256, 318, 28, 18),
        line((256, 336), (256, 362)),
        arc(256, 362, 40, 24, 10, 170),
        curve((236, 384), (240, 420), (256, 428), (272, 420), (276, 384)),
    ]


def tree():
    return [
        curve((228, 470), (234, 400), (232, 330)),
        curve((288, 470), (280, 400), (284, 330)),
        curve(
            (232, 330),
            (160, 330),
            (120, 280),
            (140, 220),
            (120, 160),
            (175, 110),
            (230, 70),
            (300, 80),
            (355, 110),
            (395, 170),
            (380, 230),
            (395, 290),
            (350, 335),
            (284, 330),
        ),
        line((256, 470), (256, 420)),
        line((60, 472), (450, 470)),
    ]


def car():
    return [
        line((62, 335), (60, 282), (140, 268), (188, 198), (330, 198), (382, 266), (450, 282), (454, 335), (412, 337)),
        line((108, 337), (328, 337)),
        arc(150, 340, 42, 42),
        arc(370, 340, 42, 42),
        arc(150, 340, 14, 14),
        arc(370, 340, 14, 14),
        loop((160, 266), (198, 214), (252, 214), (252, 266)),
        loop((272, 266), (272, 214), (322, 214), (360, 266)),
        line((262, 275), (262, 330)),
    ]


def sun_over_hills():
    rays = [
        line(
            (370 + 78 * np.cos(np.radians(a)), 150 + 78 * np.sin(np.radians(a))),
            (370 + 110 * np.cos(np.radians(a)), 150 + 110 * np.sin(np.radians(a))),
        )
        for a in range(0, 360, 45)
    ]
    return [
        arc(370, 150, 58, 58),
        *rays,
        curve((20, 380), (110, 300), (210, 320), (300, 380), (400, 330), (492, 360)),
        curve((20, 450), (140, 400), (260, 430), (380, 400), (492, 440)),
    ]


def flower():
    petals = [
        arc(256 + 62 * np.cos(np.radians(a)), 190 + 62 * np.sin(np.radians(a)), 38, 24, rot=a)
        for a in range(0, 360, 60)
    ]
    return [
        arc(256, 190, 30, 30),
        *petals,
        curve((256, 290), (250, 370), (262, 480)),
        curve((254, 400), (200, 360), (160, 372), (206, 410), (254, 404)),
        curve((258, 430), (310, 390), (350, 404), (306, 440), (258, 436)),
    ]


def fish():
    return [
        curve((110, 256), (180, 180), (290, 175), (360, 250)),
        curve((110, 256), (180, 330), (290, 335), (360, 262)),
        loop((360, 256), (442, 190), (432, 256), (444, 322)),
        arc(165, 240, 10, 10),
        arc(210, 256, 26, 48, -70, 70),
        curve((250, 190), (280, 150), (320, 200)),
        curve((300, 300), (320, 330), (300, 340)),
    ]


def bird():
    return [
        arc(240, 290, 120, 75, -20, 330),
        arc(345, 215, 48, 45, -190, 110),
        loop((388, 205), (440, 218), (390, 232)),
        arc(355, 205, 6, 6),
        curve((170, 280), (230, 250), (300, 290), (240, 320), (180, 300)),
        line((125, 270), (60, 240), (80, 300), (125, 310)),
        line((230, 362), (224, 430), (205, 440)),
        line((270, 362), (272, 430), (290, 440)),
    ]


def apple():
    return [
        curve(
            (256, 170),
            (320, 130),
            (400, 180),
            (400, 300),
            (330, 430),
            (256, 410),
            (182, 430),
            (112, 300),
            (112, 180),
            (192, 130),
            closed=True,
        ),
        curve((256, 175), (262, 120), (280, 80)),
        curve((270, 120), (320, 80), (370, 100), (320, 130), (272, 122)),
    ]


def cup():
    return [
        arc(240, 200, 110, 30),
        curve((130, 200), (140, 330), (180, 400), (240, 410), (300, 400), (340, 330), (350, 200)),
        curve((344, 250), (410, 240), (420, 300), (380, 350), (330, 340)),
        arc(240, 420, 180, 40, -20, 200),
        curve((200, 160), (185, 130), (210, 100), (195, 60)),
        curve((260, 160), (245, 130), (270, 100), (255, 60)),
    ]


def boat():
    return [
        loop((90, 320), (422, 320), (362, 400), (150, 400)),
        line((256, 320), (256, 80)),
        loop((266, 92), (266, 302), (404, 302)),
        line((246, 110), (150, 300), (246, 300)),
        curve(
            (40, 430),
            (90, 415),
            (140, 435),
            (190, 418),
            (240, 436),
            (290, 418),
            (340, 436),
            (390, 418),
            (440, 434),
            (480, 420),
        ),
    ]


def star():
    outer = [
        (256 + 190 * np.cos(np.radians(-90 + 72 * k)), 270 + 190 * np.sin(np.radians(-90 + 72 * k))) for k in range(5)
    ]
    inner = [
        (256 + 78 * np.cos(np.radians(-54 + 72 * k)), 270 + 78 * np.sin(np.radians(-54 + 72 * k))) for k in range(5)
    ]
    return [loop(*[p for pair in zip(outer, inner, strict=True) for p in pair])]


def heart():
    return [
        curve(
            (256, 170),
            (300, 100),
            (400, 100),
            (420, 190),
            (360, 300),
            (256, 420),
            (152, 300),
            (92, 190),
            (112, 100),
            (212, 100),
            closed=True,
        ),
    ]


def umbrella():
    return [
        arc(256, 240, 200, 160, 180, 360),
        curve(
            (56, 240),
            (90, 222),
            (123, 242),
            (156, 222),
            (190, 242),
            (223, 222),
            (256, 242),
            (290, 222),
            (323, 242),
            (356, 222),
            (390, 242),
            (423, 222),
            (456, 240),
        ),
        line((256, 82), (256, 62)),
        curve((256, 240), (258, 350), (256, 430), (235, 460), (212, 440)),
        curve((256, 82), (200, 140), (190, 240)),
        curve((256, 82), (312, 140), (322, 240)),
    ]


def balloon():
    return [
        curve(
            (256, 60), (350, 90), (380, 190), (330, 300), (256, 340), (182, 300), (132, 190), (162, 90), closed=True
        ),
        loop((256, 340), (242, 362), (270, 362)),
        curve((256, 362), (236, 400), (276, 440), (246, 488)),
        curve((200, 130), (190, 160), (196, 190)),
    ]


def mushroom():
    return [
        curve((80, 270), (110, 140), (256, 90), (402, 140), (432, 270)),
        curve((80, 270), (256, 290), (432, 270)),
        curve((210, 285), (200, 380), (190, 440), (256, 450), (322, 440), (312, 380), (302, 285)),
        arc(190, 190, 26, 20),
        arc(300, 170, 30, 22),
        arc(360, 230, 16, 14),
    ]


def butterfly():
    return [
        arc(256, 270, 14, 90),
        arc(180, 200, 80, 60, rot=-25),
        arc(332, 200, 80, 60, rot=25),
        arc(190, 330, 60, 48, rot=30),
        arc(322, 330, 60, 48, rot=-30),
        curve((250, 182), (230, 130), (200, 100)),
        curve((262, 182), (282, 130), (312, 100)),
    ]


def snowman():
    return [
        arc(256, 385, 105, 95),
        arc(256, 228, 75, 68),
        arc(256, 112, 54, 50),
        arc(236, 100, 6, 6),
        arc(276, 100, 6, 6),
        loop((256, 116), (300, 124), (256, 128)),
        line((186, 215), (110, 170), (96, 150)),
        line((326, 215), (402, 170), (420, 155)),
        arc(256, 215, 5, 5),
        arc(256, 250, 5, 5),
    ]


def rocket():
    return [
        curve((196, 380), (190, 230), (220, 120), (256, 60), (292, 120), (322, 230), (316, 380)),
        line((196, 380), (316, 380)),
        arc(256, 200, 30, 30),
        line((196, 300), (140, 380), (196, 380)),
        line((316, 300), (372, 380), (316, 380)),
        line((216, 390), (230, 450), (244, 410), (256, 470), (268, 410), (282, 450), (296, 390)),
    ]


def kite():
    return [
        loop((250, 60), (380, 190), (250, 360), (140, 190)),
        line((250, 60), (250, 360)),
        line((140, 190), (380, 190)),
        curve((250, 360), (220, 400), (270, 430), (230, 470), (260, 500)),
        loop((222, 398), (250, 386), (226, 420)),
        loop((250, 446), (272, 430), (268, 462)),
    ]


def moon():
    return [
        arc(256, 256, 170, 170, 60, 300),
        curve((341, 109), (250, 150), (220, 256), (250, 362), (341, 403)),
        line((400, 110), (400, 150)),
        line((380, 130), (420, 130)),
    ]


def cloud_with_rain():
    drops = [line((x, 320 + (x % 3) * 12), (x - 14, 370 + (x % 3) * 12)) for x in range(150, 400, 45)]
    return [
        curve(
            (110, 290),
            (80, 240),
            (120, 190),
            (170, 190),
            (200, 130),
            (270, 120),
            (320, 160),
            (380, 150),
            (430, 200),
            (420, 270),
            (380, 296),
            (256, 298),
        ),
        line((110, 290), (256, 298)),
        *drops,
    ]


def ice_cream():
    return [
        loop((170, 250), (342, 250), (256, 480)),
        line((196, 300), (300, 400)),
        line((228, 262), (322, 350)),
        line((316, 300), (212, 400)),
        line((284, 262), (190, 350)),
        curve((170, 250), (150, 210), (190, 150), (256, 120), (322, 150), (362, 210), (342, 250)),
        arc(256, 100, 14, 14),
    ]


def leaf():
    return [
        curve((110, 400), (150, 240), (280, 110), (420, 90), (400, 230), (300, 360), (110, 400), closed=False),
        line((70, 440), (110, 400), (380, 118)),
        line((190, 318), (170, 250)),
        line((250, 256), (232, 190)),
        line((310, 190), (300, 140)),
        line((190, 318), (260, 330)),
        line((250, 256), (330, 260)),
    ]


def pear():
    return [
        curve(
            (256, 120),
            (300, 140),
            (310, 220),
            (370, 320),
            (340, 430),
            (256, 450),
            (172, 430),
            (142, 320),
            (202, 220),
            (212, 140),
            closed=True,
        ),
        line((256, 122), (262, 70)),
        curve((262, 90), (300, 60), (330, 80), (298, 100), (262, 92)),
    ]


def cherry():
    return [
        arc(180, 370, 60, 58),
        arc(330, 380, 58, 56),
        curve((180, 312), (210, 200), (280, 110)),
        curve((330, 324), (310, 220), (280, 110)),
        curve((282, 112), (330, 70), (390, 90), (330, 130), (282, 114)),
        curve((160, 350), (156, 370), (168, 390)),
    ]


def banana():
    return [
        curve((100, 160), (120, 320), (250, 410), (420, 360), (440, 330)),
        curve((100, 160), (170, 290), (280, 330), (440, 320)),
        line((440, 320), (440, 340)),
        line((95, 150), (90, 120), (108, 118), (110, 158)),
    ]


def carrot():
    return [
        curve((180, 170), (190, 280), (240, 400), (300, 470)),
        curve((300, 470), (300, 360), (320, 240), (310, 140)),
        line((180, 170), (310, 140)),
        curve((230, 160), (200, 90), (160, 60)),
        curve((250, 156), (250, 80), (260, 40)),
        curve((270, 152), (300, 90), (350, 60)),
        line((220, 250), (250, 246)),
        line((250, 330), (280, 320)),
    ]


def bus():
    windows = [loop((x, 170), (x + 54, 170), (x + 54, 230), (x, 230)) for x in (80, 150, 220, 290)]
    return [
        loop((60, 130), (440, 130), (452, 360), (60, 360)),
        *windows,
        loop((370, 170), (430, 170), (430, 350), (370, 350)),
        arc(140, 365, 36, 36),
        arc(360, 365, 36, 36),
        line((60, 280), (360, 280)),
    ]


def airplane():
    return [
        curve(
            (60, 270), (120, 240), (300, 236), (440, 230), (470, 256), (440, 282), (300, 280), (120, 276), (60, 270)
        ),
        line((230, 240), (290, 110), (330, 110), (300, 240)),
        line((230, 278), (290, 410), (330, 410), (300, 280)),
        line((100, 258), (70, 180), (100, 180), (150, 250)),
        line((380, 246), (380, 262)),
        line((340, 246), (340, 262)),
    ]


def hat():
    return [
        arc(256, 370, 200, 50),
        curve((150, 360), (150, 250), (156, 130)),
        curve((362, 360), (362, 250), (356, 130)),
        arc(256, 130, 100, 26),
        line((150, 320), (362, 320)),
        line((150, 290), (362, 290)),
    ]


def t_shirt():
    return [
        loop(
            (180, 90),
            (120, 110),
            (50, 190),
            (110, 250),
            (150, 215),
            (150, 440),
            (362, 440),
            (362, 215),
            (402, 250),
            (462, 190),
            (392, 110),
            (332, 90),
        ),
        curve((180, 90), (256, 140), (332, 90)),
        line((150, 215), (150, 250)),
    ]


def bottle():
    return [
        line((220, 60), (220, 150), (170, 220), (170, 450), (342, 450), (342, 220), (292, 150), (292, 60)),
        line((212, 60), (300, 60)),
        loop((170, 270), (342, 270), (342, 380), (170, 380)),
        line((220, 90), (292, 90)),
    ]


def clock():
    ticks = [
        line(
            (256 + 160 * np.cos(np.radians(a)), 256 + 160 * np.sin(np.radians(a))),
            (256 + 182 * np.cos(np.radians(a)), 256 + 182 * np.sin(np.radians(a))),
        )
        for a in range(0, 360, 30)
    ]
    return [arc(256, 256, 200, 200), *ticks, line((256, 150), (256, 256), (330, 300)), arc(256, 256, 8, 8)]


def light_bulb():
    return [
        curve(
            (210, 340), (200, 290), (150, 230), (160, 130), (256, 70), (352, 130), (362, 230), (312, 290), (302, 340)
        ),
        line((210, 340), (302, 340)),
        line((212, 370), (300, 370)),
        line((216, 400), (296, 400)),
        line((230, 430), (282, 430)),
        line((230, 340), (236, 230), (256, 260), (276, 230), (282, 340)),
    ]


def candle():
    return [
        loop((200, 200), (312, 200), (312, 460), (200, 460)),
        arc(256, 200, 56, 14),
        line((256, 188), (256, 160)),
        curve((256, 160), (230, 130), (256, 70), (282, 130), (256, 160)),
        curve((200, 240), (230, 260), (228, 300)),
        line((140, 460), (372, 460)),
    ]


def cake():
    candles = [loop((x, 120), (x + 20, 120), (x + 20, 190), (x, 190)) for x in (176, 246, 316)]
    flames = [curve((x + 10, 118), (x, 100), (x + 10, 78), (x + 20, 100), (x + 10, 118)) for x in (176, 246, 316)]
    return [
        arc(256, 200, 170, 30),
        curve((86, 200), (86, 300), (90, 420)),
        curve((426, 200), (426, 300), (422, 420)),
        arc(256, 420, 166, 34, 0, 180),
        curve(
            (86, 260), (130, 290), (170, 262), (214, 290), (256, 262), (298, 290), (340, 262), (384, 290), (426, 262)
        ),
        *candles,
        *flames,
    ]


def gift_box():
    return [
        loop((110, 220), (402, 220), (402, 450), (110, 450)),
        loop((90, 170), (422, 170), (422, 222), (90, 222)),
        line((256, 170), (256, 450)),
        curve((256, 170), (200, 100), (170, 140), (210, 170), (256, 170)),
        curve((256, 170), (312, 100), (342, 140), (302, 170), (256, 170)),
    ]


def bell():
    return [
        curve((110, 400), (160, 340), (170, 200), (256, 120), (342, 200), (352, 340), (402, 400)),
        line((110, 400), (402, 400)),
        arc(256, 420, 26, 22),
        arc(256, 100, 22, 22),
        curve((190, 340), (256, 352), (322, 340)),
    ]


def snail():
    turns = np.linspace(0, 4.6 * np.pi, 140)
    spiral = np.stack([290 + (6 + 7.5 * turns) * np.cos(turns), 270 + (6 + 7.5 * turns) * np.sin(turns)], 1)
    return [
        (spiral, False),
        curve((150, 300), (150, 390), (300, 392), (440, 396), (470, 380), (430, 360), (396, 340)),
        curve((150, 300), (120, 280), (90, 290), (100, 320), (150, 330)),
        line((110, 286), (90, 210)),
        line((130, 282), (140, 205)),
    ]


def owl():
    return [
        curve((150, 130), (110, 250), (130, 400), (256, 450), (382, 400), (402, 250), (362, 130)),
        line((150, 130), (180, 80), (220, 120), (292, 120), (332, 80), (362, 130)),
        arc(205, 200, 46, 46),
        arc(307, 200, 46, 46),
        arc(205, 200, 14, 14),
        arc(307, 200, 14, 14),
        loop((240, 240), (272, 240), (256, 280)),
        curve((140, 280), (180, 330), (200, 400)),
        curve((372, 280), (332, 330), (312, 400)),
        line((220, 450), (220, 480)),
        line((292, 450), (292, 480)),
    ]


def cactus():
    return [
        curve((220, 400), (216, 250), (220, 120), (256, 80), (292, 120), (296, 250), (292, 400)),
        curve((216, 280), (150, 280), (130, 220), (132, 170), (160, 172), (170, 240), (216, 244)),
        curve((296, 240), (350, 240), (372, 190), (374, 140), (346, 142), (340, 200), (296, 204)),
        loop((170, 400), (342, 400), (322, 480), (190, 480)),
        line((256, 130), (256, 370)),
    ]


def mountain():
    return [
        line((30, 430), (190, 150), (270, 280), (340, 190), (482, 430)),
        line((150, 220), (175, 240), (190, 215), (210, 244), (228, 220)),
        line((30, 432), (482, 432)),
        arc(420, 100, 40, 40),
    ]


def tent():
    return [
        loop((60, 420), (256, 110), (452, 420)),
        line((256, 110), (256, 420)),
        line((256, 200), (200, 420)),
        line((256, 200), (312, 420)),
        line((256, 110), (236, 70)),
        line((20, 422), (492, 422)),
    ]


def castle():
    return [
        line(
            (90, 440),
            (90, 150),
            (130, 150),
            (130, 180),
            (170, 180),
            (170, 150),
            (210, 150),
            (210, 240),
            (302, 240),
            (302, 150),
            (342, 150),
            (342, 180),
            (382, 180),
            (382, 150),
            (422, 150),
            (422, 440),
            (90, 440),
        ),
        line((210, 240), (210, 210), (240, 210), (240, 240)),
        line((272, 240), (272, 210), (302, 210)),
        curve((220, 440), (220, 360), (256, 330), (292, 360), (292, 440)),
        loop((140, 260), (160, 260), (160, 300), (140, 300)),
        loop((352, 260), (372, 260), (372, 300), (352, 300)),
        line((150, 150), (150, 80), (190, 95), (150, 110)),
    ]


def turtle():
    return [
        arc(240, 300, 150, 110, 180, 360),
        line((90, 300), (390, 300)),
        arc(420, 270, 42, 36),
        arc(430, 262, 5, 5),
        curve((130, 300), (120, 350), (160, 350), (170, 300)),
        curve((300, 300), (300, 350), (340, 350), (340, 300)),
        line((90, 300), (60, 320)),
        line((180, 300), (200, 240), (280, 240), (300, 300)),
        line((200, 240), (170, 200)),
        line((280, 240), (310, 200)),
    ]


def duck():
    return [
        curve((100, 300), (140, 400), (300, 420), (400, 350), (380, 290), (320, 280), (300, 240)),
        curve((100, 300), (150, 280), (200, 300), (240, 290)),
        arc(300, 190, 60, 58, 110, 430),
        loop((356, 190), (430, 200), (360, 220)),
        arc(315, 175, 7, 7),
        curve((190, 330), (240, 310), (300, 340), (230, 370)),
        curve((60, 440), (160, 430), (260, 450), (360, 432), (460, 446)),
    ]


def rabbit():
    return [
        arc(256, 320, 120, 110),
        arc(205, 140, 32, 85, rot=-8),
        arc(307, 140, 32, 85, rot=8),
        arc(210, 300, 12, 14),
        arc(302, 300, 12, 14),
        loop((244, 342), (268, 342), (256, 356)),
        line((256, 356), (256, 376)),
        line((220, 360), (150, 350)),
        line((292, 360), (362, 350)),
        curve((236, 380), (246, 392), (256, 376), (266, 392), (276, 380)),
    ]


def teapot():
    return [
        curve((150, 200), (120, 300), (150, 400), (256, 420), (362, 400), (392, 300), (362, 200)),
        arc(256, 200, 106, 26),
        curve((200, 178), (210, 130), (256, 120), (302, 130), (312, 178)),
        arc(256, 112, 14, 12),
        curve((140, 260), (80, 250), (60, 180), (40, 150)),
        curve((150, 340), (100, 320), (70, 200)),
        curve((382, 240), (450, 240), (460, 320), (380, 360)),
    ]


def lamp():
    return [
        loop((180, 110), (332, 110), (392, 250), (120, 250)),
        line((256, 250), (256, 420)),
        arc(256, 430, 90, 22),
        line((300, 250), (300, 300)),
        arc(300, 306, 6, 6),
    ]


def envelope():
    return [
        loop((70, 140), (442, 140), (442, 380), (70, 380)),
        line((70, 144), (256, 280), (442, 144)),
        line((70, 378), (200, 240)),
        line((442, 378), (312, 240)),
    ]


def pencil():
    return [
        line((70, 360), (330, 100), (412, 182), (152, 442)),
        line((70, 360), (40, 470), (152, 442)),
        line((52, 428), (85, 458)),
        line((330, 100), (360, 70), (442, 152), (412, 182)),
        line((110, 400), (370, 140)),
        line((300, 130), (382, 212)),
    ]


def key():
    return [
        arc(150, 256, 80, 80),
        arc(150, 256, 26, 26),
        line((230, 240), (460, 240), (460, 272), (230, 272)),
        line((420, 272), (420, 320), (390, 320), (390, 272)),
        line((360, 272), (360, 306), (336, 306), (336, 272)),
    ]


def chair():
    return [
        line((170, 60), (170, 470)),
        line((340, 60), (340, 470)),
        line((170, 80), (340, 80)),
        line((170, 140), (340, 140)),
        loop((120, 280), (390, 280), (390, 320), (120, 320)),
        line((140, 320), (140, 470)),
        line((370, 320), (370, 470)),
    ]


SKETCHES: dict[str, tuple[str, Callable[[], list[Path2]]]] = {
    "house": ("house", house),
    "face": ("face", face),
    "cat": ("cat", cat),
    "dog": ("dog", dog),
    "tree": ("tree", tree),
    "car": ("car", car),
    "sun_over_hills": ("sun over hills", sun_over_hills),
    "flower": ("flower", flower),
    "fish": ("fish", fish),
    "bird": ("bird", bird),
    "apple": ("apple", apple),
    "cup": ("cup", cup),
    "boat": ("boat", boat),
    "star": ("star", star),
    "heart": ("heart", heart),
    "umbrella": ("umbrella", umbrella),
    "balloon": ("balloon", balloon),
    "mushroom": ("mushroom", mushroom),
    "butterfly": ("butterfly", butterfly),
    "snowman": ("snowman", snowman),
    "rocket": ("rocket", rocket),
    "kite": ("kite", kite),
    "moon": ("moon", moon),
    "cloud_with_rain": ("cloud with rain", cloud_with_rain),
    "ice_cream": ("ice cream", ice_cream),
    "leaf": ("leaf", leaf),
    "pear": ("pear", pear),
    "cherry": ("cherry", cherry),
    "banana": ("banana", banana),
    "carrot": ("carrot", carrot),
    "bus": ("bus", bus),
    "airplane": ("airplane", airplane),
    "hat": ("hat", hat),
    "t_shirt": ("t-shirt", t_shirt),
    "bottle": ("bottle", bottle),
    "clock": ("clock", clock),
    "light_bulb": ("light bulb", light_bulb),
    "candle": ("candle", candle),
    "cake": ("cake", cake),
    "gift_box": ("gift box", gift_box),
    "bell": ("bell", bell),
    "snail": ("snail", snail),
    "owl": ("owl", owl),
    "cactus": ("cactus", cactus),
    "mountain": ("mountain", mountain),
    "tent": ("tent", tent),
    "castle": ("castle", castle),
    "turtle": ("turtle", turtle),
    "duck": ("duck", duck),
    "rabbit": ("rabbit", rabbit),
    "teapot": ("teapot", teapot),
    "lamp": ("lamp", lamp),
    "envelope": ("envelope", envelope),
    "pencil": ("pencil", pencil),
    "key": ("key", key),
    "chair": ("chair", chair),
}
WIDTHS = (3, 4, 5, 6, 6, 6, 8, 10)  # canvas px: mostly the default brush (6), some thinner and thicker hands


def author(name: str, concept: str, shapes: list[Path2], seed: int) -> dict:
    """One drawing's stroke file: a width per drawing (details one pixel thinner), a hand per stroke."""
    rng = np.random.default_rng(seed)
    width = int(rng.choice(WIDTHS))
    wobble = float(rng.uniform(1.0, 3.0))
    strokes = []
    for shape in shapes:
        size = np.ptp(shape[0], axis=0).max()
        stroke_width = width - 1 if size < 60 and width > 3 else width
        points = hand(shape, rng, wobble)
        strokes.append({"width": stroke_width, "points": np.round(points, 1).tolist()})
    return {"name": name, "concept": concept, "strokes": strokes}


def main() -> None:
    for seed, (name, (concept, draw)) in enumerate(SKETCHES.items()):
        record = author(name, concept, draw(), seed)
        if name == "house":  # the browser test draws this one with the canvas's default brush
            for stroke in record["strokes"]:
                stroke["width"] = 6
        text = json.dumps(record, separators=(",", ":"))
        (FOLDER / f"{name}.json").write_text(text + "\n")
    print(f"wrote {len(SKETCHES)} stroke files to {FOLDER}")


if __name__ == "__main__":
    main()
