"""Model files: .npz + JSON header, no pickle, bit-exact round trip, atomic writes,
clear errors for corrupt or mismatched files."""

import json
import os
import zipfile

import numpy as np
import pytest

import npmdn


@pytest.fixture
def trained():
    d = npmdn.datasets.heteroscedastic(300, seed=0)
    m = npmdn.MDN(1, 1, 3, hidden=(8, 8), seed=0, backend="numpy")
    m.fit(d.x, d.y, epochs=3, verbose=False)
    return m, d


@pytest.mark.parametrize("dtype,cov", [("float32", "diagonal"), ("float64", "isotropic")])
def test_round_trip_is_bit_exact(tmp_path, dtype, cov):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    m = npmdn.MDN(3, 2, 4, hidden=(6,), dtype=dtype, covariance=cov, seed=1, backend="numpy")
    m.fit(x, y * 5 + 2, epochs=2, verbose=False)
    path = tmp_path / "model.npz"
    m.save(path)
    m2 = npmdn.load(path, backend="numpy")
    assert m2.config == m.config and m2.fitted
    assert m2.params.tobytes() == m.params.tobytes()
    for name in ("x_shift", "x_scale", "y_shift", "y_scale"):
        assert getattr(m2, name).tobytes() == getattr(m, name).tobytes()
    assert m2.log_prob(x, y).tobytes() == m.log_prob(x, y).tobytes()
    assert m2.sample(x, 3, seed=4).tobytes() == m.sample(x, 3, seed=4).tobytes()
    assert npmdn.MDN.load(path).config == m.config


def test_file_is_plain_npz_with_json_header(tmp_path, trained):
    m, _ = trained
    path = tmp_path / "m.npz"
    m.save(path)
    with np.load(path, allow_pickle=False) as f:
        header = json.loads(f["header"].tobytes().decode())
        assert set(f.files) == {"header", "params", "x_shift", "x_scale", "y_shift", "y_scale"}
    assert header["format"] == "npmdn-model" and header["config"] == m.config
    assert header["n_params"] == m.n_params


def test_save_is_atomic_and_keeps_old_file_on_failure(tmp_path, trained, monkeypatch):
    m, d = trained
    path = tmp_path / "m.npz"
    m.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        m.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # no temporary file left behind


def test_save_to_bad_place(tmp_path, trained):
    m, _ = trained
    with pytest.raises(ValueError, match="does not exist"):
        m.save(tmp_path / "no" / "such" / "dir" / "m.npz")
    with pytest.raises(ValueError, match="directory"):
        m.save(tmp_path)


def _rewrite(src, dst, **changes):
    with np.load(src, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    header = json.loads(data["header"].tobytes().decode())
    for k, v in changes.items():
        if k == "header":
            header.update(v)
        elif v is None:
            del data[k]
        else:
            data[k] = v
    data["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(dst, **data)


def test_corrupt_and_mismatched_files(tmp_path, trained):
    m, _ = trained
    good = tmp_path / "good.npz"
    m.save(good)
    raw = good.read_bytes()

    with pytest.raises(FileNotFoundError):
        npmdn.load(tmp_path / "missing.npz")

    bad = tmp_path / "truncated.npz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a valid npmdn model file"):
        npmdn.load(bad)

    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match="not a valid npmdn model file"):
        npmdn.load(junk)

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ValueError, match="no npmdn header"):
        npmdn.load(foreign)

    cases = {
        "version": (dict(header={"format_version": 99}), "format version 99"),
        "format": (dict(header={"format": "something-else"}), "npmdn-model format"),
        "arch": (dict(header={"config": {**m.config, "hidden": [9, 8]}}), "architecture needs"),
        "config": (dict(header={"config": {**m.config, "n_components": -1}}), "configuration"),
        "missing": (dict(y_scale=None), "'y_scale' is missing"),
        "checksum": (dict(params=m.params + np.float32(1e-3)), "checksum"),
        "dtype": (dict(params=m.params.astype(np.float64)), "dtype"),
    }
    for name, (changes, message) in cases.items():
        path = tmp_path / f"{name}.npz"
        _rewrite(good, path, **changes)
        with pytest.raises(ValueError, match=message):
            npmdn.load(path)

    # a flipped byte inside the stored parameters is caught (zip CRC or our checksum)
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("params.npy")
    flipped = bytearray(raw)
    pos = info.header_offset + 30 + len(info.filename) + 200
    flipped[pos] ^= 0xFF
    bad_bytes = tmp_path / "flipped.npz"
    bad_bytes.write_bytes(bytes(flipped))
    with pytest.raises(ValueError):
        npmdn.load(bad_bytes)


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, header=np.array([{"format": "npmdn-model"}], dtype=object))
    with pytest.raises(ValueError, match="not a valid npmdn model file"):
        npmdn.load(path)


def test_saved_file_has_ordinary_permissions(tmp_path, trained):
    from npmdn._io import new_file_mode

    m, _ = trained
    path = tmp_path / "m.npz"
    m.save(path)
    assert (path.stat().st_mode & 0o777) == new_file_mode()


def test_non_zip_file_message(tmp_path):
    path = tmp_path / "m.npz"
    path.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="not an .npz"):
        npmdn.load(path)
