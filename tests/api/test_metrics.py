"""npmdn.metrics and the model's density methods: PIT of the model's own samples is
uniform, a miscalibrated model is caught, coverage agrees with the intervals,
score() reports every number as a float, user units survive standardization."""

import math

import numpy as np
import pytest

import npmdn
from npmdn import metrics

stats = pytest.importorskip("scipy.stats")


@pytest.fixture(scope="module")
def fitted():
    d = npmdn.datasets.inverted_sinusoid(1500, seed=2)
    m = npmdn.MDN(1, 1, 5, hidden=(16, 16), seed=0, backend="numpy")
    m.fit(d.x, d.y, epochs=15, batch_size=128, lr=5e-3, verbose=False)
    return m, d


def test_pit_of_the_models_own_samples_is_uniform(fitted):
    m, _ = fitted
    x = np.random.default_rng(0).uniform(-10, 10, (4000, 1))
    y = m.sample(x, 1, seed=1)[:, 0]
    u = m.cdf(x, y)
    assert u.shape == (4000,)
    res = stats.kstest(u, "uniform")
    assert res.pvalue > 1e-3, res
    assert math.isclose(metrics.pit_ks(u), res.statistic, rel_tol=1e-12)
    cal = metrics.calibration(*m.mixture_raw(x), y)
    for c in metrics.DEFAULT_LEVELS:  # binomial standard error at n = 4000 is <= 0.008
        assert abs(cal[f"coverage_{100 * c:g}"] - c) < 0.03, cal


@pytest.mark.parametrize("scale,shift", [(2.0, 0.0), (0.5, 0.0), (1.0, 0.5)])
def test_a_miscalibrated_model_is_caught(fitted, scale, shift):
    m, _ = fitted
    x = np.random.default_rng(3).uniform(-10, 10, (4000, 1))
    y = m.sample(x, 1, seed=4)[:, 0]
    logits, mu, ls = m.mixture_raw(x)
    wrong = (logits, mu + np.float32(shift), ls + np.float32(math.log(scale)))
    cal = metrics.calibration(*wrong, y)
    ks_p = stats.kstest(metrics.pit(*wrong, y), "uniform").pvalue
    if scale > 1:  # too wide: over-covers (KS has little power against a symmetric PIT)
        assert cal["coverage_90"] > 0.95 and cal["calibration_error"] > 0.04, cal
    elif scale < 1:  # too narrow: under-covers
        assert cal["coverage_90"] < 0.85 and ks_p < 1e-6, (cal, ks_p)
    else:  # shifted: the PIT piles up on one side
        assert ks_p < 1e-6 and cal["pit_ks"] > 0.08, (cal, ks_p)
    # and the right model scores better on CRPS and NLL
    assert metrics.crps(*wrong, y).mean() > m.crps(x, y).mean()
    assert metrics.nll(*wrong, y) > m.nll(x, y)


def test_coverage_agrees_with_the_intervals(fitted):
    m, d = fitted
    x, y = d.x[:800], d.y[:800, 0]
    cal = m.score(x, y, levels=[0.5, 0.8])
    for c in (0.5, 0.8):
        lo, hi = m.interval(x, c)
        inside = np.mean((y >= lo) & (y <= hi))
        assert cal[f"coverage_{100 * c:g}"] == pytest.approx(inside, abs=1.5 / 800)


def test_score_is_a_flat_dict_of_floats(fitted):
    m, d = fitted
    s = m.score(d.x, d.y)
    want = {"nll", "crps", "coverage_50", "coverage_80", "coverage_90", "coverage_95",
            "calibration_error", "pit_ks"}
    assert set(s) == want
    assert all(type(v) is float and math.isfinite(v) for v in s.values())
    assert s["nll"] == m.nll(d.x, d.y)
    assert s["crps"] == pytest.approx(m.crps(d.x, d.y).mean(), rel=1e-12)
    raw = metrics.summary(*m.mixture_raw(d.x), d.y)
    assert raw["nll"] == pytest.approx(s["nll"], abs=1e-4)  # float64 vs the float32 kernel
    assert raw["crps"] == s["crps"] and raw["pit_ks"] == s["pit_ks"]
    np.testing.assert_allclose(-metrics.log_score(*m.mixture_raw(d.x), d.y),
                               -m.log_prob(d.x, d.y), rtol=1e-5, atol=1e-5)


def test_model_methods_are_the_functional_ones_on_mixture_raw(fitted):
    m, d = fitted
    x = d.x[:50]
    raw = m.mixture_raw(x)
    modes = m.modes(x)
    want = npmdn.mixture_modes(*raw)
    np.testing.assert_array_equal(modes.locations, want.locations)
    np.testing.assert_array_equal(modes.count, want.count)
    np.testing.assert_array_equal(m.quantile(x, [0.1, 0.9]),
                                  npmdn.mixture_quantile(*raw, [0.1, 0.9]))
    assert m.quantile(x, 0.3).shape == (50,)
    # predict kinds
    np.testing.assert_array_equal(m.predict(x), m.predict(x, kind="mean"))
    np.testing.assert_allclose(m.predict(x, kind="mode"), modes.best(), rtol=1e-6)
    top = np.argmax(raw[0], axis=1)
    np.testing.assert_array_equal(m.predict(x, kind="component"), raw[1][np.arange(50), top])
    # the highest mode is where the density is highest among the three
    lp = {k: m.log_prob(x, m.predict(x, kind=k)) for k in ("mean", "mode", "component")}
    assert np.all(lp["mode"] >= lp["mean"] - 1e-4) and np.all(lp["mode"] >= lp["component"] - 1e-4)


def test_user_units_survive_standardization():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (600, 1))
    y = 1e4 + 300 * np.concatenate([x + 0.1 * rng.normal(size=x.shape),
                                    -x + 0.1 * rng.normal(size=x.shape)])[:600]
    y[::2] = 1e4 - 300 * x[::2, 0:1] + 30 * rng.normal(size=(300, 1))
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, backend="numpy", dtype="float64")
    m.fit(x, y, epochs=3, verbose=False)
    q = m.quantile(x[:20], [0.2, 0.7])
    assert np.all(np.abs(q - 1e4) < 3000)  # in y's units, not standardized ones
    np.testing.assert_allclose(m.cdf(x[:20], q[:, 0]), 0.2, rtol=1e-10)
    np.testing.assert_allclose(m.cdf(x[:20], q[:, 1]), 0.7, rtol=1e-10)
    # CRPS is in y's units: scaling y by 10 scales it by 10 (the network is the same)
    m2 = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, backend="numpy", dtype="float64")
    m2.fit(x, 10 * y, epochs=3, verbose=False)
    np.testing.assert_allclose(m2.crps(x, 10 * y), 10 * m.crps(x, y), rtol=1e-8)
    modes = m.modes(x[:5])
    np.testing.assert_allclose(m.log_prob(x[:5], modes.best()), modes.log_density[:, 0], rtol=1e-10)


@pytest.mark.parametrize("cov", ["diagonal", "isotropic"])
def test_two_dimensional_y_marginals_and_covariance(cov):
    d = npmdn.datasets.spiral(1200, seed=0)
    x = d.x
    y = np.concatenate([d.y, d.x * 0.5 + np.random.default_rng(0).normal(size=d.x.shape)], 1)
    m = npmdn.MDN(1, 2, 4, hidden=(16,), covariance=cov, seed=0, backend="numpy")
    m.fit(x, y, epochs=5, verbose=False)
    xs = x[:300]
    ys = m.sample(xs, 1, seed=2)[:, 0]
    u = m.cdf(xs, ys)
    assert u.shape == (300, 2)
    for k in range(2):  # every marginal of the model's own draws is uniform
        assert stats.kstest(u[:, k], "uniform").pvalue > 1e-3
    assert m.quantile(xs, [0.1, 0.5, 0.9]).shape == (300, 3, 2)
    lo, hi = m.interval(xs, 0.8)
    assert lo.shape == hi.shape == (300, 2) and np.all(lo < hi)
    assert m.crps(xs, ys).shape == (300, 2)
    modes = m.modes(xs)
    assert modes.locations.shape == (300, 4, 2)
    np.testing.assert_allclose(m.log_prob(xs, modes.best()), modes.log_density[:, 0],
                               rtol=1e-4, atol=1e-4)
    s = m.score(xs, ys)
    assert all(isinstance(v, float) for v in s.values())
    # full covariance by the law of total covariance, against many draws
    cov_pred = m.predict_covariance(xs[:3])
    draws = m.sample(xs[:3], 200_000, seed=3)
    for i in range(3):
        np.testing.assert_allclose(np.cov(draws[i].T), cov_pred[i], rtol=0.03,
                                   atol=0.03 * np.abs(cov_pred[i]).max())


def test_every_available_backend_gives_the_same_answers(fitted):
    m, d = fitted
    x, y = d.x[:100], d.y[:100]
    ref = (m.quantile(x, [0.1, 0.5]), m.modes(x).locations, m.score(x, y))
    names = npmdn.available_backends()
    assert "numpy" in names
    for name in names:
        m.to(name)
        try:
            np.testing.assert_allclose(m.quantile(x, [0.1, 0.5]), ref[0], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(m.modes(x).locations, ref[1], rtol=1e-4, atol=1e-4)
            got = m.score(x, y)
            for k, v in ref[2].items():
                assert got[k] == pytest.approx(v, rel=1e-4, abs=1e-4), k
        finally:
            m.to("numpy")


def test_pit_ks_and_coverage_on_known_values():
    u = np.array([0.1, 0.4, 0.6, 0.97])
    assert metrics.pit_ks(u) == pytest.approx(stats.kstest(u, "uniform").statistic)
    cov = metrics.coverage(u, [0.5, 0.9])
    assert cov == {"coverage_50": 0.5, "coverage_90": 0.75}
    assert set(metrics.coverage(u, [0.975])) == {"coverage_97.5"}


def test_score_sums_in_pieces_equal_summary(fitted):
    m, d = fitted
    x, y = d.x[:900], d.y[:900]
    raw = m.mixture_raw(x)
    want = metrics.summary(*raw, y, levels=(0.5, 0.9))
    parts = []
    for a in (0, 250, 700):  # uneven pieces, merged
        b = {0: 250, 250: 700, 700: 900}[a]
        r = [p[a:b] for p in raw]
        parts.append(metrics.ScoreSums((0.5, 0.9)).add(
            metrics.log_score(*r, y[a:b]), metrics.crps(*r, y[a:b]), metrics.pit(*r, y[a:b])))
    got = metrics.ScoreSums.merged(*parts).result()
    assert got.keys() == want.keys()
    for k in ("nll", "crps", "calibration_error"):
        assert got[k] == pytest.approx(want[k], rel=1e-13), k
    assert got["coverage_50"] == want["coverage_50"] and got["coverage_90"] == want["coverage_90"]
    assert abs(got["pit_ks"] - want["pit_ks"]) <= 0.5 / metrics.PIT_BINS


@pytest.mark.parametrize("bins", [4, 64, 4096])
def test_score_sums_pit_ks_within_half_a_bin(bins):
    rng = np.random.default_rng(bins)
    for u in (rng.random(1000), rng.beta(2, 5, 3000), np.array([0.0, 0.5, 1.0, 1.0])):
        s = metrics.ScoreSums(bins=bins).add(np.zeros(u.size), np.zeros(u.size), u)
        assert abs(s.pit_ks() - metrics.pit_ks(u)) <= 0.5 / bins + 1e-15
    with pytest.raises(ValueError, match="same levels and bins"):
        metrics.ScoreSums(bins=4).merge(metrics.ScoreSums(bins=8))
    with pytest.raises(ValueError, match="no rows"):
        metrics.ScoreSums().result()
