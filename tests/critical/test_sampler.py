"""The bottleneck sampler: inverse-usage balance (and its persistence), perturbations, the worker's transform."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from raygen.actors.tasks.bottleneck import perturbation_transform
from raygen.critical.compare import neighbourhood_coverage
from raygen.critical.sampler import SourceDatasetError, UsagePlan, perturbation_rng, sample_perturbation

STATES = [(f"demo-{d}", f) for d in range(4) for f in (10, 40, 75)]  # 12 critical states


def _chi2_p(counts: np.ndarray) -> float:
    return float(stats.chisquare(counts).pvalue)


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_inverse_usage_frequencies_converge_to_uniform(seed):
    plan = UsagePlan([]).plan(STATES, seed=seed, n=1200)
    counts = np.bincount(plan, minlength=len(STATES))
    assert _chi2_p(counts) > 0.01, counts


def test_inverse_usage_balances_better_than_a_uniform_draw():
    """What inverse usage adds over a uniform draw: counts closer together (a sampler ignoring counts fails)."""
    spread_inverse, spread_uniform = [], []
    for seed in range(20):
        counts = np.bincount(UsagePlan([]).plan(STATES, seed=seed, n=600), minlength=len(STATES))
        spread_inverse.append(counts.max() - counts.min())
        uniform = np.random.default_rng(seed).integers(len(STATES), size=600)
        spread_uniform.append(np.ptp(np.bincount(uniform, minlength=len(STATES))))
    assert np.median(spread_inverse) < 0.8 * np.median(spread_uniform), (spread_inverse, spread_uniform)


def test_plan_survives_resume_and_later_runs_keep_the_balance(tmp_path):
    usage = UsagePlan([], dataset="src")
    first = usage.plan(STATES, seed=0, n=30)
    usage.save(tmp_path)

    again = UsagePlan.load(tmp_path)
    assert again is not None and again.plan(STATES, seed=0, n=30) == first  # a resumed run: the same states
    assert again.counts == usage.counts
    longer = again.plan(STATES, seed=0, n=50)  # more episodes: the first 30 kept, 20 more planned
    assert longer[:30] == first and len(longer) == 50
    again.save(tmp_path)

    later = UsagePlan.load(tmp_path)
    later.plan(STATES, seed=1, n=12)  # a later run with another seed adds to the same counts
    total = np.asarray(later.counts)
    assert total.sum() == 62 and _chi2_p(total) > 0.01, total


def test_the_least_used_state_is_drawn_most():
    # one state never used, eleven used 20 times each: its weight is 21 times theirs
    usage = UsagePlan(STATES, counts=[0] + [20] * 11)
    plan = usage.plan(STATES, seed=0, n=11)
    counts = np.bincount(plan, minlength=len(STATES))
    assert counts[0] == counts.max() and counts[0] >= 4, counts
    assert usage.counts[0] == counts[0] and sum(usage.counts) == 220 + 11


def test_a_state_that_changed_under_the_same_key_is_refused(tmp_path):
    from raygen.critical.sampler import CriticalState

    def state(q0: float) -> CriticalState:
        return CriticalState("demo-0", 10, (0.5, 0.0, 0.1), {"q": [q0] * 7}, {"steps_per_segment": 12})

    usage = UsagePlan([], dataset="a")
    usage.plan([state(0.1)], seed=0, n=3)
    usage.save(tmp_path)
    again = UsagePlan.load(tmp_path)
    assert again.plan([state(0.1)], seed=0, n=3) == [0, 0, 0]  # the same state: fine
    with pytest.raises(SourceDatasetError, match=r"usage.json: critical state \('demo-0', 10\) of "
                                                 r"source.bottleneck.dataset b is not the one planned before"):
        again.plan([state(0.2)], seed=0, n=3, dataset="b")


def test_a_state_that_disappeared_is_named(tmp_path):
    usage = UsagePlan([])
    plan = usage.plan(STATES, seed=0, n=24)
    gone = STATES[plan[0]]
    with pytest.raises(SourceDatasetError, match=r"no longer marks.*another source.seed"):
        usage.plan([s for s in STATES if s != gone], seed=0, n=24)
    (tmp_path / "meta/raygen/bottleneck").mkdir(parents=True)
    (tmp_path / "meta/raygen/bottleneck/usage.json").write_text("{not json")
    with pytest.raises(SourceDatasetError, match="usage.json: unreadable"):
        UsagePlan.load(tmp_path)


def test_perturbations_follow_the_configured_ranges():
    ranges = {"radius_m": (0.2, 0.5), "elevation_deg": (5.0, 80.0), "azimuth_deg": (0.0, 360.0),
              "rotation_deg": (-180.0, 180.0)}
    draws = [sample_perturbation(perturbation_rng(7, i), **ranges) for i in range(3000)]
    r = np.array([d["r"] for d in draws])
    theta = np.degrees([d["theta"] for d in draws])
    phi = np.degrees([d["phi"] for d in draws])
    rot = np.degrees([[d["roll"], d["pitch"], d["yaw"]] for d in draws])
    for values, (lo, hi) in ((r, ranges["radius_m"]), (theta, ranges["elevation_deg"]),
                             (phi, ranges["azimuth_deg"]), *((rot[:, k], ranges["rotation_deg"]) for k in range(3))):
        assert lo <= values.min() and values.max() <= hi
        assert stats.kstest(values, "uniform", args=(lo, hi - lo)).pvalue > 0.001
    # the same (seed, index) gives the same perturbation; another index another one
    assert sample_perturbation(perturbation_rng(7, 5), **ranges) == draws[5] != draws[6]
    narrow = sample_perturbation(perturbation_rng(7, 0), radius_m=(0.1, 0.1), elevation_deg=(0, 0),
                                 azimuth_deg=(0, 0), rotation_deg=(0, 0))
    assert narrow == {"r": 0.1, "theta": 0.0, "phi": 0.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0}


def test_perturbation_transform_is_the_seeds_spherical_offset():
    p = {"r": 0.4, "theta": np.radians(30), "phi": np.radians(90), "roll": 0.0, "pitch": 0.0, "yaw": np.radians(90)}
    offset, rot = perturbation_transform(p)
    np.testing.assert_allclose(offset, [0.0, 0.4 * 0.5, 0.4 * np.cos(np.radians(30))], atol=1e-12)
    np.testing.assert_allclose(rot @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # yaw 90 turns x into y
    half, rot_half = perturbation_transform(p, 0.5)
    np.testing.assert_allclose(half, offset / 2, atol=1e-12)
    np.testing.assert_allclose(rot_half @ [1, 0, 0], [np.cos(np.pi / 4), np.sin(np.pi / 4), 0], atol=1e-12)
    q = {"r": 0.3, "theta": 1.0, "phi": 2.0, "roll": 0.4, "pitch": -1.1, "yaw": 2.5}
    o, m = perturbation_transform(q)
    assert np.isclose(np.linalg.norm(o), 0.3) and np.allclose(m @ m.T, np.eye(3)) and np.isclose(np.linalg.det(m), 1)


def test_neighbourhood_coverage_counts_voxels_in_the_ball():
    centre = np.array([[0.5, 0.0, 0.2]])
    assert neighbourhood_coverage(centre, np.zeros((0, 3)), 0.2) == 0.0
    # a dense cloud filling the ball covers all of it; a line through it only a thin part
    g = np.mgrid[-0.2:0.2:0.01, -0.2:0.2:0.01, -0.2:0.2:0.01].reshape(3, -1).T
    cloud = centre + g[np.linalg.norm(g, axis=1) <= 0.2]
    assert neighbourhood_coverage(centre, cloud, 0.2) > 0.95
    line = centre + np.c_[np.linspace(-0.2, 0.2, 200), np.zeros(200), np.zeros(200)]
    assert 0.0 < neighbourhood_coverage(centre, line, 0.2) < 0.05
    far = centre + [1.0, 0, 0]
    assert neighbourhood_coverage(centre, far, 0.2) == 0.0
    # with the tilt: a hand kept pointing down fills a quarter of the pose cells, every tilt all of them
    down = np.column_stack([cloud, np.zeros(len(cloud))])
    assert 0.23 < neighbourhood_coverage(centre, down, 0.2) <= 0.25
    every = np.concatenate([np.column_stack([cloud, np.full(len(cloud), tilt)]) for tilt in (5, 30, 60, 150)])
    assert neighbourhood_coverage(centre, every, 0.2) > 0.95
    # the part of the ball under the table does not count: a centre on the table has half a ball
    on_table = np.array([[0.5, 0.0, 0.0]])
    g2 = g[(np.linalg.norm(g, axis=1) <= 0.2) & (g[:, 2] >= 0)]
    assert neighbourhood_coverage(on_table, on_table + g2, 0.2) > 0.95
