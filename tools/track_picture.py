"""Draw a few frames of one episode with its 2D contact tracks (the README's picture).

    .venv/bin/python tools/track_picture.py DATASET OUT.png [--episode K] [--frames 40 110 200]

Centroid white, left pad magenta, right pad cyan; a hollow ring where the flow stage marks a track hidden.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from raygen.datasets.reader import DatasetReader

COLOURS = [(255, 255, 255), (255, 0, 255), (0, 220, 255)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("dataset")
    p.add_argument("out")
    p.add_argument("--episode", default="0")
    p.add_argument("--frames", type=int, nargs="+", default=[40, 110, 200])
    p.add_argument("--scale", type=int, default=3)
    args = p.parse_args()
    ep = DatasetReader(args.dataset).episode(int(args.episode) if args.episode.isdigit() else args.episode)
    rows = []
    for cam, c in ep.cameras.items():
        uv, vis = ep.frame_features[f"tracks2d.{cam}"], ep.frame_features[f"tracks2d.{cam}.visible"]
        tiles = []
        for t in args.frames:
            t = min(t, ep.length - 1)
            img = cv2.resize(c.rgb[t], None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_NEAREST)
            for n, colour in enumerate(COLOURS):
                centre = tuple(int((v + 0.5) * args.scale) for v in uv[t, n])
                cv2.circle(img, centre, 2 * args.scale, colour, -1 if vis[t, n] else 1, lineType=cv2.LINE_AA)
            for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # white on a dark outline
                cv2.putText(img, f"{cam} frame {t}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thick,
                            cv2.LINE_AA)
            tiles.append(img)
        rows.append(np.concatenate(tiles, axis=1))
    cv2.imwrite(args.out, cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
