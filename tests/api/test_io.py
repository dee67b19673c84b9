"""npmdn._io.atomic_open, the one way npmdn writes a file: what is at the path decides
how it is written, and nothing that is not a regular file is ever replaced by one."""

import os
import socket
import stat
import threading

import numpy as np
import pytest

import npmdn
from npmdn._io import atomic_open, new_file_mode, resolve

posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and /proc are POSIX")


def _write(path, data=b"new", **kw):
    with atomic_open(path, "wb", **kw) as f:
        f.write(data)


def _reader(path, out):
    """Read a FIFO to its end in a thread; ``out`` gets the bytes."""
    def run():
        with open(path, "rb") as f:
            out.append(f.read())
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture
def model():
    m = npmdn.MDN(1, 1, 2, hidden=(3,), seed=0, backend="numpy")
    m.fit(np.arange(20.0), np.arange(20.0) % 3, epochs=1, verbose=False)
    return m


def test_replacing_a_file_keeps_its_permission_bits(tmp_path, model):
    path = tmp_path / "m.npz"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    model.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # was 0644 after the rename
    os.chmod(path, 0o640)
    _write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_bytes() == b"new"
    fresh = tmp_path / "fresh"
    _write(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == new_file_mode()


def test_a_symlink_is_followed_and_its_target_replaced(tmp_path, model):
    target = tmp_path / "real.npz"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    link = tmp_path / "link.npz"
    link.symlink_to(target.name)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == target.name
    assert npmdn.load(target).params.tobytes() == model.params.tobytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # a chain of links, and one into another directory
    (tmp_path / "sub").mkdir()
    deep = tmp_path / "sub" / "deep.npz"
    deep.write_bytes(b"old")
    (tmp_path / "l2").symlink_to("sub/deep.npz")
    (tmp_path / "l1").symlink_to("l2")
    _write(tmp_path / "l1", b"chained")
    assert deep.read_bytes() == b"chained" and (tmp_path / "l1").is_symlink()
    assert (tmp_path / "l2").is_symlink()


def test_a_dangling_symlink_creates_its_target(tmp_path, model):
    link = tmp_path / "dangling.npz"
    link.symlink_to("made-by-save.npz")
    model.save(link)
    assert link.is_symlink()
    assert npmdn.load(tmp_path / "made-by-save.npz").fitted
    gone = tmp_path / "into-nowhere.npz"
    gone.symlink_to("no/such/dir/m.npz")
    with pytest.raises(ValueError, match="does not exist"):
        model.save(gone)
    assert gone.is_symlink()


@posix_only
def test_a_fifo_is_written_through_not_replaced(tmp_path, model):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    t = _reader(fifo, got)
    model.save(fifo)
    t.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO, not a regular file
    (tmp_path / "copy.npz").write_bytes(got[0])
    assert npmdn.load(tmp_path / "copy.npz").params.tobytes() == model.params.tobytes()


@posix_only
def test_dev_null_through_a_link_stays_a_device(tmp_path, model):
    link = tmp_path / "null.npz"
    link.symlink_to(os.devnull)
    model.save(link)
    _write(link)
    assert link.is_symlink() and stat.S_ISCHR(os.stat(os.devnull).st_mode)


@posix_only
@pytest.mark.skipif(not hasattr(os, "mknod") or os.geteuid() != 0, reason="mknod needs root")
def test_device_nodes_written_through_or_refused(tmp_path):
    null = tmp_path / "null"  # a character device: /dev/null's numbers
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    _write(null, b"gone")
    assert stat.S_ISCHR(os.stat(null).st_mode)
    block = tmp_path / "block"  # a block device is never written: it would be a disk
    os.mknod(block, stat.S_IFBLK | 0o600, os.makedev(7, 0))
    with pytest.raises(OSError, match="block device"):
        _write(block)
    assert stat.S_ISBLK(os.stat(block).st_mode)


@posix_only
def test_sockets_directories_and_trailing_separators_are_refused(tmp_path):
    sock_path = tmp_path / "s"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(sock_path))
        with pytest.raises(OSError, match="socket"):
            _write(sock_path)
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
    finally:
        s.close()
    with pytest.raises(OSError, match="directory"):
        _write(tmp_path)
    with pytest.raises(OSError, match="path separator"):
        _write(str(tmp_path / "sub") + os.sep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary files


@posix_only
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_descriptor_paths_write_to_the_descriptor(tmp_path):
    r, w = os.pipe()
    try:
        target = resolve(f"/proc/self/fd/{w}")
        assert target.kind == "through" and target.fd == w
        _write(f"/proc/self/fd/{w}", b"through the pipe")
        _write(f"/dev/fd/{w}", b", twice")
        os.close(w)
        w = None
        assert os.read(r, 100) == b"through the pipe, twice"
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    # a descriptor on a regular file opened for appending: appended to, not truncated
    log = tmp_path / "log"
    log.write_bytes(b"kept ")
    with open(log, "ab") as f:
        _write(f"/proc/self/fd/{f.fileno()}", b"appended")
    assert log.read_bytes() == b"kept appended"


def test_overwrite_false_never_replaces(tmp_path, model):
    path = tmp_path / "m.npz"
    model.save(path, overwrite=False)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        model.save(path, overwrite=False)
    link = tmp_path / "dangling"
    link.symlink_to("nothing")
    with pytest.raises(FileExistsError):
        _write(link, overwrite=False)  # a dangling link is something: not ours to replace
    assert path.read_bytes() == before and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "m.npz"]
