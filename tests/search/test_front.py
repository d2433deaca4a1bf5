import numpy as np
from scipy.stats import norm
from optuna._hypervolume import compute_hypervolume

from sksearch import front


def _random_front(rng, n=12):
    pts = rng.uniform(0, 1, (n, 2))
    return pts[front.is_pareto_front(pts)]


def test_hypervolume_matches_optuna_and_fallback():
    rng = np.random.default_rng(0)
    ref = np.array([1.0, 1.05])
    for _ in range(20):
        pts = rng.uniform(0, 1, (15, 2))
        on = pts[front.is_pareto_front(pts)]
        assert np.isclose(front.hypervolume(pts, ref), compute_hypervolume(on, ref))
        assert np.isclose(front.hypervolume(pts, ref), front._hypervolume_fallback(on, ref))


def test_ranks_match_peeling():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 1, (30, 2))
    assert (front.nondomination_ranks(pts) == front._peel_fronts(pts)).all()


def test_ehvi_is_the_hypervolume_gain_when_certain_and_its_mean_when_not():
    rng = np.random.default_rng(2)
    ref = np.array([1.0, 1.05])
    for _ in range(10):
        f = _random_front(rng)
        cost, mu, sd = rng.uniform(0, 1), rng.uniform(0, 1), 0.1
        base = front.hypervolume(f, ref)
        gain = front.hypervolume(np.vstack([f, [mu, cost]]), ref) - base
        assert np.isclose(front.expected_hypervolume_improvement(f, ref, cost, mu, 0.0), gain)
        # The expectation by numerical integration over the Gaussian's quantiles (midpoints of 400 equal-mass
        # slices: no sampling noise, and a tenth of the hypervolume calls a Monte Carlo estimate needed).
        ys = mu + sd * norm.ppf((np.arange(400) + 0.5) / 400)
        numeric = np.mean([front.hypervolume(np.vstack([f, [y, cost]]), ref) - base for y in ys])
        assert np.isclose(front.expected_hypervolume_improvement(f, ref, cost, mu, sd), numeric, atol=1e-3)


def test_one_cost_scale_rule_for_the_report_and_the_proposer():
    from sksearch.front import cost_scale

    assert cost_scale(300e6, [5e9]) == 300e6          # the budget when the study has one
    assert cost_scale(None, [2e6, 9e6, 4e6]) == 9e6    # else the largest cost seen
    assert cost_scale(None, []) == 1.0 and cost_scale(None, [0.0]) == 1.0
