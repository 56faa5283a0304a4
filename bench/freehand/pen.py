"""The pen of the free-hand stroke files: lines, loops, arcs and curves in 512 x 512 canvas pixels (y down), and
`hand`, which turns a shape into what a mouse or pen gives the canvas (points a few pixels apart, a slow wobble,
jitter, ends that overshoot or stop short, closed shapes that do not quite close)."""

from __future__ import annotations

import numpy as np

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
