"""What the exporters share: resized depth keeps recorded pixels where the scaled intrinsics put them."""

import numpy as np

from raygen.datasets.episode import CameraFrames
from raygen.hdf5.common import camera_images, nearest_indices


def test_depth_pixels_sit_where_the_scaled_intrinsics_put_them():
    h0, w0 = 12, 18
    k = np.array([[20.0, 0, 8.5], [0, 20.0, 5.5], [0, 0, 1]])
    u0 = np.arange(w0)[None, :].repeat(h0, 0)
    depth = (1000 + u0 + 100 * np.arange(h0)[:, None]).astype(np.uint16)[None]  # encodes (row, col)
    cam = CameraFrames(rgb=np.zeros((1, h0, w0, 3), np.uint8), depth=depth, intrinsics=k, pose=np.eye(4))
    for h, w in ((4, 6), (6, 9), (12, 18), (5, 7)):
        _, small, k2 = camera_images(cam, "rgbd", (h, w))
        rows, cols = (small[0] - 1000) // 100, (small[0] - 1000) % 100
        # the recorded pixel each stored pixel came from, mapped through K then K2^-1: its stored position
        x = (cols - k[0, 2]) / k[0, 0] * k2[0, 0] + k2[0, 2]
        y = (rows - k[1, 2]) / k[1, 1] * k2[1, 1] + k2[1, 2]
        v, u = np.mgrid[0:h, 0:w]
        assert np.abs(x - u).max() <= 0.5 * w / w0 + 1e-9 and np.abs(y - v).max() <= 0.5 * h / h0 + 1e-9
        if (h0 // h) % 2 == 1 and h0 % h == 0 and w0 % w == 0:  # odd integer factors: exact
            assert np.allclose(x, u) and np.allclose(y, v)
    assert nearest_indices(12, 4).tolist() == [1, 4, 7, 10] and nearest_indices(4, 8).tolist() == [0, 0, 1, 1, 2, 2,
                                                                                                    3, 3]
