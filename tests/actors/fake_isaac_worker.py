"""TEST DOUBLE for Isaac Sim (which cannot run without an RTX GPU): the real Isaac worker loop,
option handling and task code, with PyBullet standing in for the simulator behind the same
PickPlaceSim calls. Run as ``python -m tests.actors.fake_isaac_worker`` by WorkerHost."""

import sys

from raygen.actors._child import serve
from raygen.actors.bullet.sim import BulletPickPlace
from raygen.actors.isaac.worker import IsaacBackend


def stand_in(*, width=512, height=512, fps=30.0, cpu_threads=1, task_name="pick_place", **_isaac_only):
    if task_name == "two_arms":
        from raygen.actors.bullet.two_arms import BulletTwoArms

        return BulletTwoArms(width=width, height=height, fps=fps)
    return BulletPickPlace(width=width, height=height, fps=fps)


if __name__ == "__main__":
    sys.exit(serve(lambda options: IsaacBackend(options, sim_factory=stand_in)))
