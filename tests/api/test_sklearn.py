"""npmdn.sklearn.MDNRegressor: scikit-learn's own estimator checks, and the estimator
inside the tools people use it with (clone, Pipeline, TransformedTargetRegressor,
GridSearchCV, cross_val_score, pandas, pickle/joblib), its own file format, and the
model selection targets of the issue.

Estimator checks, on three instances: the defaults; a small isotropic one on the
numpy backend without validation; a small float32 one. Every check passes on the
first two; the float32 one has one expected failure, with its reason below (it is
why ``dtype`` defaults to float64 here). One tag says what a check cannot know:
``regressor_tags.poor_score``, because check_regressors_train compares ``score``
with 0.5 as an R^2, while this score is the mean log-likelihood
(test_r2_on_the_checks_regression_data makes the R^2 claim for ``predict``).
The whole check run takes about 10 s on 2 cores.
"""

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
pd = pytest.importorskip("pandas")

import joblib  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.compose import TransformedTargetRegressor  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import npmdn  # noqa: E402
from npmdn.sklearn import MDNRegressor, load  # noqa: E402

SMALL = dict(n_components=2, hidden=(8,), epochs=5)


def expected_failed_checks(estimator):
    """Check name -> why it may fail, per instance: one, for a float32 network only."""
    if estimator.dtype == "float32":
        return {
            "check_methods_subset_invariance": "float32 network: BLAS takes one row by gemv, "
            "a batch by gemm, so a row's mean moves ~1 float32 ulp, past the check's atol 1e-7",
        }
    return {}


@parametrize_with_checks(
    [
        MDNRegressor(),  # the defaults: 64x64 tanh, 100 epochs, validation_fraction=0.1
        MDNRegressor(**SMALL, covariance="isotropic", backend="numpy", validation_fraction=0.0,
                     n_iter_no_change=2, batch_size=None, lr_schedule="constant"),
        MDNRegressor(**SMALL, dtype="float32"),
        # the small-data settings: noise regularisation and a sigma floor
        MDNRegressor(**SMALL, noise_x="auto", noise_y="auto", min_sigma=0.01,
                     validation_fraction=0.0),
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def small(**kw):
    return MDNRegressor(**{**SMALL, "random_state": 0, **kw})


@pytest.fixture(scope="module")
def hetero():
    d = npmdn.datasets.heteroscedastic(400, seed=1)
    return d.x, d.y[:, 0]


# --------------------------------------------------------------------------
# the estimator itself
# --------------------------------------------------------------------------


def test_init_only_stores_and_defaults():
    est = MDNRegressor()
    assert est.get_params() == {
        "n_components": 5, "hidden": (64, 64), "activation": "tanh",
        "covariance": "diagonal", "epochs": 100, "batch_size": 256, "lr": 3e-3,
        "lr_schedule": "cosine", "validation_fraction": 0.1, "n_iter_no_change": None,
        "weight_decay": 0.0, "clip_norm": None, "noise_x": 0.0, "noise_y": 0.0,
        "min_sigma": None, "backend": None, "dtype": "float64",
        "random_state": None, "verbose": False,
    }
    MDNRegressor(n_components=-1, hidden="x", lr="fast")  # checked in fit, not here


def test_fit_sets_fitted_attributes_and_predicts_like_y(hetero):
    x, y = hetero
    est = small(epochs=20)
    assert est.fit(x, y) is est
    assert isinstance(est.model_, npmdn.MDN) and est.model_.fitted
    assert est.n_features_in_ == 1 and est.n_outputs_ == 1
    assert est.n_iter_ == est.history_.epochs == 20 and len(est.history_.val_nll) == 20
    assert not hasattr(est, "feature_names_in_")
    mean, std = est.predict(x[:7], return_std=True)
    assert mean.shape == std.shape == (7,) and mean.dtype == np.float64
    np.testing.assert_array_equal(mean, est.predict(x[:7]))
    dist = est.predict_distribution(x[:7])
    assert isinstance(dist, npmdn.Mixture) and len(dist) == 7
    np.testing.assert_array_equal(mean, dist.mean()[:, 0])
    np.testing.assert_array_equal(std, dist.std()[:, 0])
    np.testing.assert_array_equal(est.predict_quantiles(x[:7], [0.1, 0.9]),
                                  dist.quantile([0.1, 0.9]))
    lo, hi = est.predict_interval(x[:7], 0.8)
    assert lo.shape == hi.shape == (7,) and np.all(lo < mean) and np.all(mean < hi)
    # fitted on a column y: predictions are columns too
    est2 = small(epochs=20).fit(x, y[:, None])
    np.testing.assert_array_equal(est2.predict(x[:7])[:, 0], mean)
    assert est2.predict(x[:7], return_std=True)[1].shape == (7, 1)


def test_multi_output(rng):
    x = rng.normal(size=(60, 3))
    y = np.c_[x[:, 0], x[:, 1] ** 2, -x[:, 2]] + 0.1 * rng.normal(size=(60, 3))
    est = small().fit(x, y)
    assert est.n_outputs_ == 3 and est.predict(x).shape == (60, 3)
    assert est.predict(x, return_std=True)[1].shape == (60, 3)
    assert est.predict_quantiles(x, [0.2, 0.5]).shape == (60, 2, 3)
    assert est.predict_distribution(x).covariance().shape == (60, 3, 3)
    assert np.isfinite(est.score(x, y))


def test_score_is_the_mean_log_likelihood(hetero):
    x, y = hetero
    est = small(epochs=20).fit(x, y)
    lp = est.model_.log_prob(x, y)
    assert isinstance(est.score(x, y), float)
    assert est.score(x, y) == pytest.approx(np.mean(lp), rel=1e-15)
    assert est.score(x, y) == pytest.approx(np.mean(est.predict_distribution(x).log_prob(y)),
                                            rel=1e-12)
    w = np.arange(len(y), dtype=float)
    assert est.score(x, y, sample_weight=w) == pytest.approx(np.average(lp, weights=w))
    with pytest.raises(ValueError, match="fitted on 1 output"):
        est.score(x, np.c_[y, y])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.score(x, y[:-1])


def test_random_state(hetero):
    x, y = hetero
    a = small(random_state=3).fit(x, y).predict(x)
    np.testing.assert_array_equal(a, small(random_state=3).fit(x, y).predict(x))
    assert not np.array_equal(a, small(random_state=4).fit(x, y).predict(x))
    # an int seeds the MDN itself: the estimator is MDN(seed=3) with those settings
    b = small(random_state=np.random.RandomState(0)).fit(x, y).predict(x)
    c = small(random_state=np.random.RandomState(0)).fit(x, y).predict(x)
    np.testing.assert_array_equal(b, c)
    assert small(random_state=3).fit(x, y).model_.seed == 3


def test_validation_split_and_tiny_data_sets():
    x, y = np.array([[0.5]]), np.array([1.0])
    with pytest.raises(ValueError, match="n_samples=1"):
        small().fit(x, y)  # validation needs 2 rows
    est = small(validation_fraction=0.0).fit(x, y)
    assert np.isfinite(est.predict(x)).all()
    est = small().fit(np.array([[0.0], [1.0]]), np.array([0.0, 1.0]))  # 1 row each way
    assert len(est.history_.val_nll) == est.n_iter_
    est = small(validation_fraction=0.0, n_iter_no_change=1, epochs=50).fit(
        np.array([[0.0], [1.0]]), np.array([0.0, 1.0]))
    assert est.n_iter_ <= 50


def test_float32_network_agrees_to_float32_rounding(hetero):
    """float32 runs one row through BLAS gemv and a batch through gemm: a row's mean
    then moves by about one float32 ulp with its batch (why float64 is the default)."""
    x, y = hetero
    est = small(dtype="float32").fit(x, y)
    full = est.predict(x[:20])
    rows = np.array([est.predict(x[i : i + 1])[0] for i in range(20)])
    np.testing.assert_allclose(rows, full, rtol=1e-5, atol=1e-6)
    assert est.predict(x).dtype == np.float64


def test_r2_on_the_checks_regression_data():
    """The default estimator's point prediction on check_regressors_train's data: the
    R^2 > 0.5 that check asks of ``score`` (its log-likelihood is a fit Gaussian's)."""
    from sklearn.utils.estimator_checks import _regression_dataset

    x, y = _regression_dataset()
    y = (y - y.mean()) / y.std()
    est = MDNRegressor(random_state=0).fit(x, y)
    assert r2_score(y, est.predict(x)) > 0.7
    assert est.score(x, y) > -0.7  # a linear Gaussian fit scores -0.60 here


def test_partial_fit_continues(hetero):
    x, y = hetero
    est = small(n_components=1, lr=1e-2)
    for i in range(4):
        est.partial_fit(x[i * 100 : (i + 1) * 100], y[i * 100 : (i + 1) * 100])
    assert est.n_iter_ == 4 and len(est.history_.train_nll) == 4
    model = est.model_
    before = est.score(x, y)
    for _ in range(30):
        est.partial_fit(x, y)
    assert est.model_ is model and est.n_iter_ == 34
    assert est.score(x, y) > before
    fitted = small().fit(x, y)
    n = fitted.n_iter_
    fitted.partial_fit(x, y)  # after fit: one more epoch on the fitted network
    assert fitted.n_iter_ == n + 1
    with pytest.raises(ValueError, match="expecting 1 features"):
        est.partial_fit(np.c_[x, x], y)
    with pytest.raises(ValueError, match="fitted on 1"):
        est.partial_fit(x, np.c_[y, y])


@pytest.mark.parametrize(
    "params,error,match",
    [
        ({"n_components": 0}, ValueError, "n_components must be >= 1"),
        ({"n_components": 2.5}, TypeError, "n_components must be an integer"),
        ({"hidden": (8, -1)}, ValueError, "hidden layer width must be >= 1"),
        ({"hidden": "wide"}, TypeError, "hidden layer width must be an integer"),
        ({"activation": "swish"}, ValueError, "activation must be one of"),
        ({"covariance": "tied"}, ValueError, "covariance must be one of"),
        ({"epochs": 0}, ValueError, "epochs must be >= 1"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"lr": 0.0}, ValueError, "lr must be > 0"),
        ({"lr": "fast"}, TypeError, "lr must be a real number"),
        ({"lr_schedule": "step"}, ValueError, "lr_schedule must be one of"),
        ({"validation_fraction": 1.0}, ValueError, r"validation_fraction must be in \[0, 1\)"),
        ({"validation_fraction": -0.1}, ValueError, "validation_fraction must be >= 0"),
        ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change must be >= 1"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay must be >= 0"),
        ({"clip_norm": 0.0}, ValueError, "clip_norm must be > 0"),
        ({"backend": "jax"}, ValueError, "backend must be one of"),
        ({"dtype": "float16"}, TypeError, "dtype must be 'float32' or 'float64'"),
        ({"random_state": -1}, ValueError, "random_state must be >= 0"),
        ({"random_state": "seed"}, ValueError, "random_state must be None, an int"),
        ({"verbose": "loud"}, TypeError, "verbose must be a bool"),
        ({"noise_x": -0.1}, ValueError, "noise_x must be >= 0"),
        ({"noise_y": "much"}, ValueError, "noise_y must be a number >= 0 or 'auto'"),
        ({"noise_y": [0.1]}, TypeError, "noise_y must be a number >= 0 or 'auto'"),
        ({"min_sigma": 0.0}, ValueError, "min_sigma must be > 0"),
    ],
)
def test_bad_parameters_are_clear_errors_in_fit(hetero, params, error, match):
    x, y = hetero
    est = small(**params)  # no error here
    with pytest.raises(error, match=match):
        est.fit(x, y)
    assert not hasattr(est, "model_")


def test_unfitted_and_bad_inputs(hetero):
    x, y = hetero
    from sklearn.exceptions import NotFittedError

    for call in (lambda e: e.predict(x), lambda e: e.predict_distribution(x),
                 lambda e: e.predict_quantiles(x, 0.5), lambda e: e.score(x, y)):
        with pytest.raises(NotFittedError):
            call(small())
    est = small().fit(x, y)
    with pytest.raises(ValueError, match="expecting 1 features"):
        est.predict(np.c_[x, x])
    with pytest.raises(ValueError, match="NaN"):
        est.predict(x * np.nan)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        est.predict_interval(x, 1.5)
    with pytest.raises(ValueError, match="requires y"):
        small().fit(x, None)


# --------------------------------------------------------------------------
# with scikit-learn's tools
# --------------------------------------------------------------------------


def test_clone(hetero):
    x, y = hetero
    est = small(hidden=(4, 4)).fit(x, y)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "model_")
    np.testing.assert_array_equal(twin.fit(x, y).predict(x), est.predict(x))


def test_pipeline_with_standard_scaler(hetero):
    x, y = hetero
    x_big = x * 1000.0 + 5e4  # features far from unit scale
    pipe = make_pipeline(StandardScaler(), small(epochs=20)).fit(x_big, y)
    direct = small(epochs=20).fit(StandardScaler().fit_transform(x_big), y)
    np.testing.assert_allclose(pipe.predict(x_big), direct.predict(
        StandardScaler().fit(x_big).transform(x_big)), rtol=1e-12)
    assert pipe.score(x_big, y) == pytest.approx(direct.score(
        StandardScaler().fit(x_big).transform(x_big), y), rel=1e-12)
    lo, hi = pipe[-1].predict_interval(pipe[:-1].transform(x_big), 0.9)
    assert lo.shape == (len(y),)


def test_transformed_target_regressor(hetero):
    x, y = hetero
    ttr = TransformedTargetRegressor(regressor=small(epochs=20), transformer=StandardScaler())
    ttr.fit(x, y)
    pred = ttr.predict(x)
    assert pred.shape == y.shape and np.isfinite(pred).all()
    ttr = TransformedTargetRegressor(regressor=small(epochs=20), func=np.log1p,
                                     inverse_func=np.expm1).fit(x, y - y.min())
    assert ttr.predict(x).shape == y.shape


def test_cross_val_score_is_held_out_log_likelihood(hetero):
    x, y = hetero
    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(small(epochs=20), x, y, cv=cv)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    train, test = next(cv.split(x))
    est = small(epochs=20).fit(x[train], y[train])
    assert scores[0] == pytest.approx(est.score(x[test], y[test]), rel=1e-12)


def test_grid_search_runs_in_parallel(hetero):
    """n_jobs=2 moves estimators to worker processes by pickle (joblib's loky)."""
    x, y = hetero
    gs = GridSearchCV(small(epochs=10), {"n_components": [1, 2]}, cv=2, n_jobs=2).fit(x, y)
    serial = GridSearchCV(small(epochs=10), {"n_components": [1, 2]}, cv=2).fit(x, y)
    np.testing.assert_allclose(gs.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], rtol=1e-12)


def test_pandas(hetero):
    x, y = hetero
    frame = pd.DataFrame({"dose": x[:, 0], "noise": np.zeros(len(y))})
    series = pd.Series(y, name="response")
    est = small().fit(frame, series)
    np.testing.assert_array_equal(est.feature_names_in_, ["dose", "noise"])
    pred = est.predict(frame)
    assert pred.shape == (len(y),)
    with pytest.warns(UserWarning, match="fitted with feature names"):
        np.testing.assert_array_equal(pred, est.predict(frame.to_numpy()))
    assert isinstance(est.score(frame, series), float)
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(frame.rename(columns={"dose": "x"}))
    two = small().fit(frame, pd.DataFrame({"a": y, "b": -y}))
    assert two.predict(frame).shape == (len(y), 2)


# --------------------------------------------------------------------------
# pickle, joblib and the file format
# --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_pickle_and_joblib_round_trip(hetero, backend):
    x, y = hetero
    est = small(backend=backend).fit(x, y)
    for back in (pickle.loads(pickle.dumps(est)), _joblib_round_trip(est)):
        assert back.model_.backend.name == backend
        assert back.model_.params.tobytes() == est.model_.params.tobytes()
        np.testing.assert_array_equal(back.predict(x), est.predict(x))
        np.testing.assert_array_equal(back.predict_distribution(x).sample(3, seed=1),
                                      est.predict_distribution(x).sample(3, seed=1))
        assert back.score(x, y) == est.score(x, y)
        assert back.get_params() == est.get_params()


def _joblib_round_trip(obj):
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    buf.seek(0)
    return joblib.load(buf)


def test_mdn_pickles_by_value(hetero):
    x, y = hetero
    m = npmdn.MDN(1, 1, 2, hidden=(4,), seed=0)
    m.fit(x, y, epochs=2, verbose=False)
    state = m.__getstate__()
    assert state["backend"] == m.backend.name and isinstance(state["params"], np.ndarray)
    back = pickle.loads(pickle.dumps(m))
    assert back.params.tobytes() == m.params.tobytes() and back.fitted
    np.testing.assert_array_equal(back.log_prob(x, y), m.log_prob(x, y))


def test_save_and_load(tmp_path, hetero):
    x, y = hetero
    frame = pd.DataFrame({"dose": x[:, 0]})
    est = small(hidden=[6, 5], random_state=7).fit(frame, y)
    path = tmp_path / "est.npz"
    est.save(path)
    back = load(path)
    assert type(back) is MDNRegressor and back.get_params() == {**est.get_params(),
                                                                "hidden": (6, 5)}
    np.testing.assert_array_equal(back.feature_names_in_, ["dose"])
    assert (back.n_features_in_, back.n_outputs_, back.n_iter_) == (1, 1, est.n_iter_)
    assert back.history_.to_dict() == est.history_.to_dict()
    np.testing.assert_array_equal(back.predict(frame), est.predict(frame))
    assert MDNRegressor.load(path).predict(frame).tobytes() == est.predict(frame).tobytes()
    # the same file is a model file: npmdn.load reads the MDN in it
    model = npmdn.load(path)
    assert model.params.tobytes() == est.model_.params.tobytes()
    # and partial_fit continues the loaded estimator as it would the saved one
    est.partial_fit(frame, y)
    back.partial_fit(frame, y)
    np.testing.assert_array_equal(back.predict(frame), est.predict(frame))
    # another backend on load: the estimator's parameter follows
    assert load(path, backend="numpy").backend == "numpy"


def test_save_refusals_and_corrupt_files(tmp_path, hetero):
    x, y = hetero
    with pytest.raises(Exception, match="not fitted"):
        small().save(tmp_path / "a.npz")
    est = small().fit(x, y)
    with pytest.raises(ValueError, match="does not exist"):
        est.save(tmp_path / "no" / "a.npz")
    with pytest.raises(ValueError, match="directory"):
        est.save(tmp_path)
    est.set_params(random_state=np.random.RandomState(0))
    est.save(tmp_path / "rs.npz")  # a RandomState is stored as null
    assert load(tmp_path / "rs.npz").random_state is None
    plain = tmp_path / "plain.npz"
    est.model_.save(plain)
    with pytest.raises(ValueError, match="no MDNRegressor; read it with npmdn.load"):
        load(plain)
    # a broken estimator document
    with np.load(tmp_path / "rs.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["estimator"] = np.frombuffer(b"{not json", dtype=np.uint8)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)  # the member is checksummed like the model's own arrays
    with pytest.raises(ValueError, match="checksum of 'estimator'"):
        load(bad)
    header = json.loads(arrays["header"].tobytes())
    header["sha256"]["estimator"] = hashlib.sha256(b"{not json").hexdigest()
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(bad, **arrays)  # checksum right, document wrong
    with pytest.raises(ValueError, match="not a valid MDNRegressor file"):
        load(bad)
    # nothing left behind by the atomic writes
    assert sorted(os.listdir(tmp_path)) == ["bad.npz", "plain.npz", "rs.npz"]


def test_import_npmdn_imports_neither_sklearn_nor_numba():
    code = (
        "import sys, npmdn\n"
        "bad = [m for m in ('sklearn', 'numba', 'pandas') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "npmdn.Mixture\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------
# model selection: the targets
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_grid_search_picks_several_components_on_the_inverted_sinusoid():
    d = npmdn.datasets.inverted_sinusoid(4000, seed=0)
    gs = GridSearchCV(MDNRegressor(random_state=0), {"n_components": [1, 3, 8]}, cv=3)
    gs.fit(d.x, d.y[:, 0])
    assert gs.best_params_["n_components"] > 1, gs.cv_results_["mean_test_score"]
    # one Gaussian averages the branches: far below the mixtures
    scores = gs.cv_results_["mean_test_score"]
    assert scores[0] < max(scores) - 0.5, scores


@pytest.mark.slow
def test_grid_search_on_the_heteroscedastic_quadratic_reaches_the_true_likelihood():
    d = npmdn.datasets.heteroscedastic(6000, seed=0)
    gs = GridSearchCV(MDNRegressor(random_state=0), {"n_components": [1, 3, 8]}, cv=3)
    gs.fit(d.x, d.y[:, 0])
    # equal folds: the mean of the fold means is the mean over all rows
    assert abs(gs.best_score_ - (-d.true_nll())) < 0.02, (gs.best_score_, -d.true_nll())


@pytest.mark.gpu
def test_gpu_estimator(tmp_path, hetero):
    from cases import cupy_or_skip

    cupy_or_skip()
    x, y = hetero
    est = small(backend="cupy").fit(x, y)
    assert est.model_.backend.name == "cupy"
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict(x), est.predict(x))
    est.save(tmp_path / "gpu.npz")
    np.testing.assert_array_equal(load(tmp_path / "gpu.npz").predict(x), est.predict(x))
    cpu = load(tmp_path / "gpu.npz", backend="numpy")
    np.testing.assert_allclose(cpu.predict(x), est.predict(x), rtol=1e-10)
    assert est.predict_distribution(x).backend == "cupy"
