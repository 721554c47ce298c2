"""Regenerate the bundled demo clip `src/topreward/assets/sample_pick_place.mp4` (synthetic, deterministic).

A cartoon top-down scene: a grey gripper reaches a red block, carries it to a blue cup and drops it in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from topreward.video import write_video

H, W, FPS, SECONDS = 128, 160, 10, 6


def render(t: float) -> np.ndarray:
    img = np.full((H, W, 3), (205, 190, 160), np.uint8)  # table
    img[:, :, :] += (np.arange(W) % 16 < 1)[None, :, None].astype(np.uint8) * 10  # wood grain
    cup = (100, 126, 60, 98)  # x0, x1, y0, y1
    img[cup[2] : cup[3], cup[0] : cup[1]] = (40, 70, 200)
    img[cup[2] + 5 : cup[3] - 5, cup[0] + 5 : cup[1] - 5] = (20, 35, 110)
    start, goal, home = np.array([35.0, 80.0]), np.array([113.0, 79.0]), np.array([70.0, 15.0])
    # phases: reach (0-0.3), carry (0.3-0.75), release and retreat (0.75-1)
    if t < 0.3:
        grip = home + (start - home) * (t / 0.3)
        block = start
    elif t < 0.75:
        grip = start + (goal - start) * ((t - 0.3) / 0.45)
        block = grip
    else:
        grip = goal + (home - goal) * ((t - 0.75) / 0.25)
        block = goal
    bx, by = block.astype(int)
    if t >= 0.75:  # inside the cup: drawn darker
        img[by - 6 : by + 6, bx - 6 : bx + 6] = (150, 30, 30)
    else:
        img[by - 7 : by + 7, bx - 7 : bx + 7] = (220, 40, 40)
    gx, gy = grip.astype(int)
    img[max(0, gy - 40) : gy - 8, gx - 3 : gx + 3] = (70, 70, 75)  # arm
    img[gy - 10 : gy - 7, gx - 11 : gx + 11] = (50, 50, 55)  # palm
    img[gy - 9 : gy + 2, gx - 11 : gx - 8] = (50, 50, 55)  # fingers
    img[gy - 9 : gy + 2, gx + 8 : gx + 11] = (50, 50, 55)
    return img


def main() -> None:
    n = FPS * SECONDS
    frames = np.stack([render(i / (n - 1)) for i in range(n)])
    out = Path(__file__).resolve().parents[1] / "src/topreward/assets/sample_pick_place.mp4"
    write_video(out, frames, FPS, crf=23)
    print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
