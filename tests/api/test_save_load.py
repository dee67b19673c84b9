"""Model files: .npz + JSON header, no pickle, bit-exact round trip, atomic writes,
clear errors for corrupt or mismatched files."""

import hashlib
import io
import json
import os
import shutil
import threading
import zipfile

import numpy as np
import pytest

import npmdn
from npmdn.model import file_layout


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
        "arch": (dict(header={"config": {**m.config, "hidden": [9, 8]}}), "architecture has"),
        "arch_n": (dict(header={"config": {**m.config, "hidden": [9, 8]},
                                "n_params": 179}), "architecture needs"),
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


# ------------------------------------------------------------------------------------
# crafted and damaged files: every one a ValueError, found before anything is allocated
# ------------------------------------------------------------------------------------


def _members(path):
    """{name: bytes of the .npy member} of a model file."""
    with zipfile.ZipFile(path) as z:
        return {i.filename[:-4]: z.read(i) for i in z.infolist()}


def _zip(path, members, compress=zipfile.ZIP_STORED):
    """A zip of raw .npy members (bytes) or arrays, as np.savez lays it out."""
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        for name, data in members.items():
            if isinstance(data, np.ndarray):
                with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, data, allow_pickle=False)
            else:
                z.writestr(f"{name}.npy", data)


def _header_of(path):
    return json.loads(np.lib.format.read_array(io.BytesIO(_members(path)["header"])).tobytes())


def _with_header(src, dst, header):
    members = _members(src)
    members["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    _zip(dst, members)


def _central_entries(raw: bytes):
    """Offsets of the central directory entries (signature PK\\1\\2) of a zip."""
    out, i = [], raw.find(b"PK\x01\x02")
    while i >= 0:
        out.append(i)
        i = raw.find(b"PK\x01\x02", i + 4)
    return out


def test_a_flipped_bit_in_the_zip_structure_is_a_value_error(tmp_path, trained):
    m, _ = trained
    good = tmp_path / "good.npz"
    m.save(good)
    raw = good.read_bytes()
    entries = _central_entries(raw)
    assert len(entries) == 6
    for k, at in enumerate(entries):
        for field, width in ((10, 2), (8, 2)):  # compression method, general purpose flags
            for bit in range(8 * width):
                bad = bytearray(raw)
                bad[at + field + bit // 8] ^= 1 << (bit % 8)
                path = tmp_path / f"bad-{k}-{field}-{bit}.npz"
                path.write_bytes(bytes(bad))
                try:
                    npmdn.load(path)  # some flag bits mean nothing to a reader
                except ValueError as exc:
                    assert "not a valid npmdn model file" in str(exc)
                path.unlink()
    method = bytearray(raw)
    method[entries[1] + 10] ^= 1  # stored (0) -> shrunk (1): was NotImplementedError
    (tmp_path / "method.npz").write_bytes(bytes(method))
    with pytest.raises(ValueError, match="compression method 1"):
        npmdn.load(tmp_path / "method.npz")
    flags = bytearray(raw)
    flags[entries[1] + 8] ^= 1  # "encrypted": was RuntimeError
    (tmp_path / "flags.npz").write_bytes(bytes(flags))
    with pytest.raises(ValueError, match="encrypted"):
        npmdn.load(tmp_path / "flags.npz")


@pytest.mark.parametrize("change,message", [
    ({"sha256": []}, "'sha256' must map"),
    ({"sha256": {"params": 3}}, "'sha256' must map"),
    ({"format_version": True}, "format version True"),
    ({"format_version": 1.0}, "format version 1.0"),
    ({"fitted": "no"}, "'fitted' must be true or false"),
    ({"n_params": "169"}, "'n_params' must be an integer"),
    ({"config": None}, "configuration is invalid"),
    ({"config": "mdn"}, "configuration is invalid"),
    ({"x_names": ["a", "b"]}, "'x_names' must be null or 1"),
    ({"x_names": [3]}, "'x_names' must be null or 1"),
    ({"extra": "estimator"}, "'extra' must be a list"),
])
def test_crafted_header_fields_are_value_errors(tmp_path, trained, change, message):
    m, _ = trained
    good = tmp_path / "good.npz"
    m.save(good)
    _with_header(good, tmp_path / "bad.npz", {**_header_of(good), **change})
    with pytest.raises(ValueError, match=message):
        npmdn.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("config,message", [
    ({"hidden": [1e6, 1e6]}, "must be an integer"),
    ({"hidden": [10**6, 10**6]}, "parameters"),
    ({"n_components": True}, "must be an integer"),
    ({"in_dim": 10**30}, "parameters"),
    ({"dtype": "float16"}, "dtype must be one of"),
    ({"dtype": "<f4"}, "dtype must be one of"),
    ({"hidden": 8}, "hidden must be a list"),
    ({"extra_key": 1}, "must have the keys"),
])
def test_crafted_sizes_are_refused_before_allocating(tmp_path, trained, config, message):
    """A header describing an absurd network is refused from its numbers: nothing the
    size of the network is allocated (this was a MemoryError, or worse, a long wait)."""
    m, _ = trained
    good = tmp_path / "good.npz"
    m.save(good)
    header = _header_of(good)
    header["config"] = {**header["config"], **config}
    _with_header(good, tmp_path / "bad.npz", header)
    with pytest.raises(ValueError, match=message):
        npmdn.load(tmp_path / "bad.npz")
    # the header's count agreeing with the absurd network: the params member is too small
    try:
        header["n_params"] = file_layout(header["config"])["params"][0][0]
    except (TypeError, ValueError):
        return
    _with_header(good, tmp_path / "bad.npz", header)
    with pytest.raises(ValueError, match="architecture needs"):
        npmdn.load(tmp_path / "bad.npz")


def _npy_header(shape, descr="<f8"):
    """The bytes of a .npy header declaring ``shape`` (the data need not follow)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("name,shape,descr,message", [
    ("x_shift", (10**12,), "<f8", "has shape"),
    ("params", (10**12,), "<f4", "has shape"),
    ("y_scale", (1, 1), "<f8", "has shape"),
    ("x_scale", (1,), "|O", "dtype"),
    ("header", (10**9,), "|u1", "larger than"),
])
def test_members_declaring_other_sizes_are_refused(tmp_path, trained, name, shape, descr,
                                                   message):
    m, _ = trained
    good = tmp_path / "good.npz"
    m.save(good)
    members = _members(good)
    members[name] = _npy_header(shape, descr) + members[name][128:]
    _zip(tmp_path / "bad.npz", members)
    with pytest.raises(ValueError, match="not a valid npmdn model file"):
        npmdn.load(tmp_path / "bad.npz")
    # declared in the zip's own directory as a huge member: refused from its sizes
    members = _members(good)
    members[name] = _npy_header(shape, descr)
    _zip(tmp_path / "bad2.npz", members)
    with pytest.raises(ValueError, match="not a valid npmdn model file"):
        npmdn.load(tmp_path / "bad2.npz")


def test_header_member_that_is_not_a_byte_array(tmp_path, trained):
    m, _ = trained
    good = tmp_path / "good.npz"
    m.save(good)
    for header in (np.zeros((2, 3)), np.array(3.0), np.zeros(4, np.float32),
                   np.frombuffer(b"[1, 2]", np.uint8), np.frombuffer(b"null", np.uint8)):
        members = _members(good)
        members["header"] = header
        _zip(tmp_path / "bad.npz", members)
        with pytest.raises(ValueError, match="not a valid npmdn model file"):
            npmdn.load(tmp_path / "bad.npz")


def test_only_the_needed_members_are_read(tmp_path, trained):
    """An unused member is never read: a corrupt one does not matter, and a large one
    costs no time or memory (every member was read, 1.1 GB for a 1 GiB one)."""
    import tracemalloc

    m, _ = trained
    good = tmp_path / "good.npz"
    m.save(good)
    members = _members(good)
    members["junk"] = b"\x93NUMPY" + b"\xff" * 100
    _zip(tmp_path / "junk.npz", members)
    raw = bytearray((tmp_path / "junk.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "junk.npz") as z:
        info = z.getinfo("junk.npy")
    raw[info.header_offset + 30 + len(info.filename) + 50] ^= 0xFF  # its CRC now fails
    (tmp_path / "junk.npz").write_bytes(bytes(raw))
    assert npmdn.load(tmp_path / "junk.npz").params.tobytes() == m.params.tobytes()

    big = tmp_path / "big.npz"
    shutil.copy(good, big)
    with zipfile.ZipFile(big, "a", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("unused.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.zeros(1 << 25), allow_pickle=False)  # 256 MiB
    assert big.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        npmdn.load(big, backend="numpy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, peak


@pytest.mark.skipif(os.name != "posix", reason="FIFOs are POSIX")
def test_load_refuses_a_fifo_instead_of_hanging(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    result = []

    def load():
        try:
            npmdn.load(fifo)
        except Exception as exc:  # noqa: BLE001 (the test reports what it was)
            result.append(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10)
    hung = t.is_alive()
    if hung:  # release the reader the old code left blocked in open()
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(10)
    assert not hung, "load blocked on a FIFO"
    assert isinstance(result[0], ValueError) and "FIFO" in str(result[0])
    with pytest.raises(ValueError, match="directory"):
        npmdn.load(tmp_path)


def _v1_file(path, m, estimator=None):
    """A model file as npmdn 0.1.0 wrote it (format version 1: no column names, no
    min_sigma in the configuration, and an estimator member appended after the save,
    without a checksum)."""
    arrays = m._arrays()
    config = {k: v for k, v in m.config.items() if k != "min_sigma"}
    header = {
        "format": "npmdn-model", "format_version": 1, "npmdn_version": "0.1.0",
        "config": config, "fitted": m.fitted, "n_params": m.n_params,
        "sha256": {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in arrays.items()},
    }
    blob = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    np.savez(path, header=blob, **arrays)
    if estimator is not None:
        with zipfile.ZipFile(path, "a") as z, z.open("estimator.npy", "w") as entry:
            np.lib.format.write_array(entry, estimator, allow_pickle=False)


def test_version_1_files_still_load(tmp_path, trained):
    m, d = trained
    _v1_file(tmp_path / "v1.npz", m)
    back = npmdn.load(tmp_path / "v1.npz", backend="numpy")
    assert back.params.tobytes() == m.params.tobytes() and back.fitted
    assert back.x_names is None and back.y_names is None
    np.testing.assert_array_equal(back.log_prob(d.x, d.y), m.log_prob(d.x, d.y))
    assert back.min_sigma is None
    back.save(tmp_path / "v3.npz")
    assert _header_of(tmp_path / "v3.npz")["format_version"] == 3


def test_version_2_files_load_without_a_floor(tmp_path, trained):
    """Format 2 (npmdn before min_sigma) had no min_sigma in its configuration."""
    m, d = trained
    m.save(tmp_path / "m.npz")
    members = dict(np.load(tmp_path / "m.npz", allow_pickle=False))
    header = json.loads(members.pop("header").tobytes().decode())
    header["format_version"] = 2
    del header["config"]["min_sigma"]
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v2.npz", header=blob, **members)
    back = npmdn.load(tmp_path / "v2.npz", backend="numpy")
    assert back.min_sigma is None and back.config == m.config
    np.testing.assert_array_equal(back.log_prob(d.x, d.y), m.log_prob(d.x, d.y))
    # a version 3 file must name it
    header["format_version"] = 3
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v3.npz", header=blob, **members)
    with pytest.raises(ValueError, match="min_sigma"):
        npmdn.load(tmp_path / "v3.npz")


def test_min_sigma_round_trips(tmp_path):
    d = npmdn.datasets.heteroscedastic(200, seed=1)
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, backend="numpy", min_sigma=0.25)
    m.fit(d.x, d.y, epochs=2, verbose=False)
    m.save(tmp_path / "m.npz")
    assert _header_of(tmp_path / "m.npz")["config"]["min_sigma"] == 0.25
    back = npmdn.load(tmp_path / "m.npz", backend="numpy")
    assert back.min_sigma == 0.25
    assert back.mixture(d.x)[2].tobytes() == m.mixture(d.x)[2].tobytes()
    assert back.log_prob(d.x, d.y).tobytes() == m.log_prob(d.x, d.y).tobytes()


def test_column_names_round_trip(tmp_path, trained):
    m, d = trained
    m.fit(d.x, d.y, epochs=1, verbose=False, x_names=["dose"], y_names=["response"])
    m.save(tmp_path / "named.npz")
    back = npmdn.load(tmp_path / "named.npz")
    assert (back.x_names, back.y_names) == (("dose",), ("response",))
    header = _header_of(tmp_path / "named.npz")
    assert (header["x_names"], header["y_names"]) == (["dose"], ["response"])


def test_a_bad_backend_is_not_a_bad_file(tmp_path, trained, monkeypatch):
    m, _ = trained
    m.save(tmp_path / "m.npz")
    monkeypatch.setenv("NPMDN_BACKEND", "bogus")
    with pytest.raises(ValueError, match="environment variable NPMDN_BACKEND") as info:
        npmdn.load(tmp_path / "m.npz")
    assert "not a valid npmdn model file" not in str(info.value)
