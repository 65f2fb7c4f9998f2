"""Two-subject videos: which detected face is the left person and which the right one, frame after frame.

Aff-Wild2 annotates some videos with two people as ``<video>_left`` and ``<video>_right`` (both sharing the
video's audio). A frame's faces are assigned by horizontal position: with two or more faces, the two
largest, the one further left is ``left``. With a single face (the other person turned away or out of
frame), the face goes to the side whose last known position is nearer, so a person who is alone in the
frame for a while keeps their side; before a side has been seen, its position is taken as the middle of
its half of the frame.
"""

from __future__ import annotations

import numpy as np

SIDES = ("left", "right")


class SideTracker:
    """Assigns up to two faces per frame (5-point landmarks) to the left and right subject."""

    def __init__(self, width: int):
        self.last = {"left": width / 4.0, "right": 3.0 * width / 4.0}   # last known centre x of each side

    def assign(self, faces: list[np.ndarray]) -> dict[str, np.ndarray | None]:
        """``{"left": points | None, "right": points | None}`` for the faces of one frame, largest first."""
        chosen = faces[:2]
        sides: dict[str, np.ndarray | None] = {"left": None, "right": None}
        if len(chosen) == 2:
            first, second = sorted(chosen, key=lambda f: float(f[:, 0].mean()))
            sides = {"left": first, "right": second}
        elif len(chosen) == 1:
            x = float(chosen[0][:, 0].mean())
            side = min(SIDES, key=lambda s: abs(self.last[s] - x))
            sides[side] = chosen[0]
        for side, points in sides.items():
            if points is not None:
                self.last[side] = float(points[:, 0].mean())
        return sides
