"""Properties of npmdn's files, checked on many generated cases (hypothesis).

* Loading never raises anything but ``ValueError`` (or ``FileNotFoundError``) for
  any damage to a valid model file: flipped bits, overwritten bytes, truncation,
  members replaced or removed, crafted header fields and configurations; and
  what does load is the model that was saved, never a silently different one.
* Writing an output never replaces something that is not a regular file: a FIFO,
  a character device, a symbolic link (dangling or not) stays what it was, and a
  regular file behind a link receives the data.

Derandomized with a fixed number of examples, so CI runs the same cases each time;
the whole file takes a few seconds.
"""

import hashlib
import io
import json
import os
import stat
import threading
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npmdn
from npmdn.cli.files import Output, write_text_atomic

CASES = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])
FEWER = settings(CASES, max_examples=60)


def _model(covariance="diagonal", dtype="float32"):
    m = npmdn.MDN(2, 2, 3, hidden=(4,), covariance=covariance, dtype=dtype, seed=0,
                  backend="numpy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    m.fit(x, x @ [[1.0, 2.0], [0.5, -1.0]], epochs=1, verbose=False, x_names=["a", "b"],
          y_names=["u", "v"])
    return m


MODEL = _model()


def _saved(tmp_path_factory=None):
    buf = io.BytesIO()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"npmdn-prop-{os.getpid()}.npz")
    MODEL.save(path)
    with open(path, "rb") as f:
        buf.write(f.read())
    os.unlink(path)
    return buf.getvalue()


RAW = _saved()


def _members(raw):
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


MEMBERS = _members(RAW)
HEADER = json.loads(np.lib.format.read_array(io.BytesIO(MEMBERS["header.npy"])).tobytes())


def _zip(members) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _check_load(path, data: bytes):
    """Load ``data``: a ValueError, or exactly the saved model. Nothing else."""
    with open(path, "wb") as f:
        f.write(data)
    try:
        m = npmdn.load(path, backend="numpy")
    except ValueError as exc:
        assert "not a valid npmdn model file" in str(exc), exc
        return False
    assert m.config == MODEL.config and m.fitted == MODEL.fitted
    assert m.params.tobytes() == MODEL.params.tobytes()
    for name in ("x_shift", "x_scale", "y_shift", "y_scale"):
        assert getattr(m, name).tobytes() == getattr(MODEL, name).tobytes()
    assert (m.x_names, m.y_names) == (MODEL.x_names, MODEL.y_names)
    return True


@pytest.fixture
def path(tmp_path):
    return tmp_path / "m.npz"


# --------------------------------------------------------------------------
# load: damage of every kind is a ValueError, or changes nothing
# --------------------------------------------------------------------------


@CASES
@given(bits=st.lists(st.integers(0, 8 * len(RAW) - 1), min_size=1, max_size=6))
def test_flipped_bits(path, bits):
    raw = bytearray(RAW)
    for b in bits:
        raw[b // 8] ^= 1 << (b % 8)
    _check_load(path, bytes(raw))


@CASES
@given(at=st.integers(0, len(RAW) - 1), junk=st.binary(min_size=1, max_size=64))
def test_overwritten_bytes(path, at, junk):
    raw = bytearray(RAW)
    raw[at : at + len(junk)] = junk
    _check_load(path, bytes(raw))


@CASES
@given(keep=st.integers(0, len(RAW) - 1), tail=st.binary(max_size=16))
def test_truncated_or_extended(path, keep, tail):
    loaded = _check_load(path, RAW[:keep] + tail)
    assert not loaded or keep + len(tail) >= len(RAW) - 22  # truncation is never silent


def _arrays():
    shapes = st.lists(st.integers(0, 4), max_size=3).map(tuple)
    dtypes = st.sampled_from(["<f4", "<f8", ">f8", "<i8", "|u1", "|b1", "<c16", "<U3"])
    return st.builds(lambda s, d, seed: np.random.default_rng(seed).integers(0, 255, s)
                     .astype(d), shapes, dtypes, st.integers(0, 9))


@CASES
@given(name=st.sampled_from(sorted(MEMBERS) + ["junk.npy"]),
       replacement=st.one_of(st.none(), st.binary(max_size=300), _arrays().map(_npy)))
def test_members_replaced_or_removed(path, name, replacement):
    members = dict(MEMBERS)
    if replacement is None:
        members.pop(name, None)
    else:
        members[name] = replacement
    _check_load(path, _zip(members))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.integers() | st.floats()
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8,
)
HEADER_KEYS = sorted(HEADER) + ["other"]
CONFIG_KEYS = sorted(HEADER["config"]) + ["other"]


@CASES
@given(key=st.sampled_from(HEADER_KEYS), value=JSON, drop=st.booleans())
def test_crafted_header_fields(path, key, value, drop):
    header = dict(HEADER)
    if drop:
        header.pop(key, None)
    else:
        header[key] = value
    members = dict(MEMBERS)
    members["header.npy"] = _npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
    with open(path, "wb") as f:
        f.write(_zip(members))
    try:
        npmdn.load(path, backend="numpy")
    except ValueError as exc:
        assert "not a valid npmdn model file" in str(exc), exc


@CASES
@given(key=st.sampled_from(CONFIG_KEYS),
       value=JSON | st.lists(st.integers(-3, 10**13), max_size=3) | st.integers(-3, 10**15),
       count=st.booleans())
def test_crafted_configurations(path, key, value, count):
    """Sizes of any magnitude in the configuration, with or without the header's
    parameter count agreeing: refused from the numbers, nothing allocated."""
    config = {**HEADER["config"], key: value}
    header = {**HEADER, "config": config}
    if count:
        try:
            header["n_params"] = npmdn.model.file_layout(config)["params"][0][0]
        except (TypeError, ValueError):
            pass
    members = dict(MEMBERS)
    members["header.npy"] = _npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
    with open(path, "wb") as f:
        f.write(_zip(members))
    try:
        m = npmdn.load(path, backend="numpy")
    except ValueError as exc:
        assert "not a valid npmdn model file" in str(exc), exc
    else:  # only a change that describes the same network loads
        assert m.n_params == MODEL.n_params


@FEWER
@given(bits=st.lists(st.integers(0, 8 * 4000 - 1), min_size=1, max_size=4),
       sums=st.booleans())
def test_estimator_files(tmp_path, bits, sums):
    """The scikit-learn estimator's file (a model file with one more member)."""
    sk = pytest.importorskip("npmdn.sklearn")
    raw = _estimator_file(tmp_path)
    if sums:  # damage the estimator's document, its checksum made to agree
        members = _members(raw)
        doc = bytearray(np.lib.format.read_array(io.BytesIO(members["estimator.npy"])))
        for b in bits:
            doc[(b // 8) % len(doc)] ^= 1 << (b % 8)
        header = json.loads(np.lib.format.read_array(io.BytesIO(members["header.npy"]))
                            .tobytes())
        header["sha256"]["estimator"] = hashlib.sha256(bytes(doc)).hexdigest()
        members["estimator.npy"] = _npy(np.frombuffer(bytes(doc), np.uint8))
        members["header.npy"] = _npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
        raw = _zip(members)
    else:
        raw = bytearray(raw)
        for b in bits:
            raw[(b // 8) % len(raw)] ^= 1 << (b % 8)
        raw = bytes(raw)
    path = tmp_path / "est.npz"
    path.write_bytes(raw)
    try:
        sk.load(path, backend="numpy")
    except ValueError:
        pass


_EST = {}


def _estimator_file(tmp_path):
    if "raw" not in _EST:
        from npmdn.sklearn import MDNRegressor

        rng = np.random.default_rng(0)
        x = rng.normal(size=(30, 2))
        est = MDNRegressor(n_components=2, hidden=(3,), epochs=1, random_state=0,
                           backend="numpy").fit(x, x.sum(1))
        est.save(tmp_path / "e.npz")
        _EST["raw"] = (tmp_path / "e.npz").read_bytes()
    return _EST["raw"]


# --------------------------------------------------------------------------
# outputs: never a regular file where something else was
# --------------------------------------------------------------------------

KINDS = ["fifo", "null_link", "dangling_link", "link_to_file", "chain", "file", "nothing",
         "fd_link"]


def _kind(p):
    st_ = os.lstat(p)
    if stat.S_ISLNK(st_.st_mode):
        return ("link", os.readlink(p))
    return stat.S_IFMT(st_.st_mode)


def _make(d, kind):
    """Something at ``d/out`` of ``kind``; returns (path, where the data should land)."""
    out = d / "out"
    if kind == "fifo":
        os.mkfifo(out)
        return out, None
    if kind == "null_link":
        out.symlink_to(os.devnull)
        return out, None
    if kind == "dangling_link":
        out.symlink_to("target")
        return out, d / "target"
    if kind == "link_to_file":
        (d / "target").write_bytes(b"old")
        os.chmod(d / "target", 0o640)
        out.symlink_to("target")
        return out, d / "target"
    if kind == "chain":
        (d / "sub").mkdir()
        (d / "sub" / "target").write_bytes(b"old")
        (d / "l2").symlink_to("sub/target")
        out.symlink_to("l2")
        return out, d / "sub" / "target"
    if kind == "file":
        out.write_bytes(b"old")
        return out, out
    if kind == "fd_link":
        return None, None
    return out, out


def _drain(path, got):
    def run():
        with open(path, "rb") as f:
            got.append(f.read())
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


WRITERS = ["model", "text", "output_named", "output_default"]


@settings(CASES, max_examples=120)
@given(kind=st.sampled_from(KINDS), writer=st.sampled_from(WRITERS),
       text=st.text(max_size=40))
def test_outputs_never_replace_what_is_not_a_regular_file(tmp_path_factory, kind, writer,
                                                          text):
    d = tmp_path_factory.mktemp("out")
    if kind == "fd_link":
        if not os.path.isdir("/proc/self/fd"):
            return
        r, w = os.pipe()
        out, land = f"/proc/self/fd/{w}", None
    else:
        out, land = _make(d, kind)
    before = {p.name: _kind(p) for p in d.iterdir()}
    reader, got = None, []
    if kind == "fifo" and writer != "output_default":  # a default name goes elsewhere
        reader = _drain(out, got)
    data = text.encode()

    def write(p, overwrite):
        if writer == "model":
            MODEL.save(p, overwrite=overwrite)
        else:
            write_text_atomic(p, text, overwrite)

    try:
        if writer == "output_default" and kind != "fd_link":
            written = Output(None, str(out)).write(write)
        elif writer == "output_named":
            written = Output(str(out), None).write(write)
        else:
            write(out, True)
            written = str(out)
    finally:
        if kind == "fd_link":
            os.close(w)
            piped = os.read(r, 1 << 20)
            os.close(r)
    if reader is not None:
        reader.join(10)
    after = {p.name: _kind(p) for p in d.iterdir()}
    if writer == "output_default" and kind not in ("nothing", "fd_link"):
        # a default name never touches what is there: another name is taken
        assert written != str(out) and all(after[k] == v for k, v in before.items())
        return
    assert after == {**before, **{k: v for k, v in after.items() if k not in before}}
    assert not [n for n in after if n.startswith(".npmdn-")]  # no temporary file left
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    expect = RAW_OF(writer, data)
    if kind == "fifo":
        assert got and _same(writer, got[0], expect)
    elif kind == "fd_link":
        assert _same(writer, piped, expect)
    elif land is not None:
        assert _same(writer, land.read_bytes(), expect)
        if kind == "link_to_file":
            assert stat.S_IMODE(land.stat().st_mode) == 0o640


def RAW_OF(writer, data):  # noqa: N802
    return data if writer in ("text", "output_named", "output_default") else RAW


def _same(writer, got, expect):
    if writer == "model":  # a model file: the same model (zip timestamps may differ)
        return _members(got).keys() == MEMBERS.keys() and all(
            _members(got)[k] == v for k, v in MEMBERS.items())
    return got == expect
