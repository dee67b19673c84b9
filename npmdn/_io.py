"""Writing files so that nothing a user saved is lost or half-written.

:func:`atomic_open` is the one way npmdn writes a file (models, CSV, figures).
What it does depends on what is at the path, which :func:`resolve` finds out:

* nothing, or a regular file: the data goes to a temporary file beside the
  target, is flushed and fsynced, and is renamed over it, so the target holds
  its old content or the complete new one, never a part. A replaced file
  keeps its permission bits; a new one gets the umask's.
* a symbolic link (dangling or not): it is followed, and the file it points
  to is written as above; the link stays a link.
* a FIFO, a character device (``/dev/null``, a terminal) or a descriptor
  link (``/dev/stdout``, ``/proc/self/fd/1``): written through, never
  replaced, since a rename would put a regular file where the device was.
* a directory, a block device or a socket: refused with an ``OSError``
  naming the path and what is there, before anything is written.

``overwrite=False`` never replaces anything: the complete file is linked to
the name only if the name is free (``os.link`` fails when it is taken), and
``FileExistsError`` says it was not. Two processes choosing the same default
name can then never both think they own it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
import tempfile

# the directories whose entries are links to another process's open files
_FD_DIR = re.compile(r"^/proc/(self|thread-self|\d+)(/task/\d+)?/fd$")


def new_file_mode() -> int:
    """The permissions a newly created file gets under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class Target:
    """Where a write to a path lands (see :func:`resolve`).

    ``path`` is the final path (symbolic links followed); ``kind`` is one of
    ``"new"`` (nothing there yet), ``"file"`` (a regular file, replaced),
    ``"through"`` (a FIFO, character device or descriptor: written through);
    ``mode`` the permission bits of an existing regular file.
    """

    def __init__(self, path: str, kind: str, mode: int | None = None, fd: int | None = None):
        self.path, self.kind, self.mode, self.fd = path, kind, mode, fd


def _what(st) -> str:
    m = st.st_mode
    if stat.S_ISDIR(m):
        return "a directory"
    if stat.S_ISBLK(m):
        return "a block device"
    if stat.S_ISSOCK(m):
        return "a socket"
    return "not a regular file"


def _refuse(path, why, err=errno.EINVAL):
    return OSError(err, f"cannot write {path}: {why}")


def resolve(path) -> Target:
    """Find out what a write to ``path`` would do, without writing anything.

    Follows symbolic links one at a time (so that a link into
    ``/proc/<pid>/fd`` is seen as a descriptor, not as the file it names).
    Raises ``OSError`` naming the problem for a path that cannot be written:
    a name ending in a separator, a missing directory, a directory, a block
    device, a socket, a loop of links.
    """
    given = os.fspath(path)
    if not given or given.endswith(os.sep) or (os.altsep and given.endswith(os.altsep)):
        raise _refuse(given, "the name ends in a path separator: give a file name",
                      errno.EISDIR)
    p = os.path.abspath(given)
    for _ in range(40):
        directory = os.path.realpath(os.path.dirname(p))
        base = os.path.basename(p)
        if base in ("", ".", ".."):
            raise _refuse(given, "it names a directory", errno.EISDIR)
        p = os.path.join(directory, base)
        if _FD_DIR.match(directory) and os.path.lexists(p):
            return _descriptor(given, p, directory)
        if not os.path.islink(p):
            break
        p = os.path.join(directory, os.readlink(p))
    else:
        raise _refuse(given, "too many levels of symbolic links", errno.ELOOP)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(p)):
            where = "" if p == os.path.abspath(given) else f" (the link points to {p})"
            raise _refuse(given, f"directory {os.path.dirname(p)} does not exist{where}",
                          errno.ENOENT) from None
        return Target(p, "new")
    if stat.S_ISREG(st.st_mode):
        return Target(p, "file", stat.S_IMODE(st.st_mode))
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
        return Target(p, "through")
    raise _refuse(given, f"it is {_what(st)}",
                  errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL)


def _descriptor(given, p, directory) -> Target:
    """A link in ``/proc/<pid>/fd``: written through; our own descriptors by ``dup``,
    so that the write lands where that descriptor is (its offset, its append mode)."""
    own = directory.split("/")[2] in ("self", "thread-self", str(os.getpid()))
    try:
        st = os.stat(p)
    except OSError as exc:
        raise _refuse(given, f"the descriptor cannot be opened ({exc.strerror})",
                      exc.errno) from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)
            or stat.S_ISCHR(st.st_mode)):
        raise _refuse(given, f"the descriptor is {_what(st)}")
    fd = int(os.path.basename(p)) if own and os.path.basename(p).isdigit() else None
    return Target(p, "through", fd=fd)


def check_writable(path) -> Target:
    """:func:`resolve`, plus the permission checks a write will meet (before any work)."""
    target = resolve(path)
    if target.kind == "through":
        ok = target.fd is not None or os.access(target.path, os.W_OK)
        where = target.path
    else:  # a temporary file is made in the directory and renamed there
        where = os.path.dirname(target.path)
        ok = os.access(where, os.W_OK | os.X_OK)
    if not ok:
        raise _refuse(os.fspath(path), f"{where} is not writable", errno.EACCES)
    return target


class atomic_open:  # noqa: N801 (used as a function: ``with atomic_open(path) as f``)
    """Open ``path`` for writing as the module docstring describes; a context manager.

    ``mode`` is ``"wb"``, ``"w"`` or ``"w+b"`` (the file object is opened so);
    ``kwargs`` go to :func:`open` (``newline``, ``encoding``). On success the
    data is committed; on any error a temporary file is removed and the target
    is as it was. ``overwrite=False`` raises ``FileExistsError`` (and writes
    nothing) when something is already at ``path``. After the ``with`` block,
    :attr:`path` is the path written (links followed).
    """

    def __init__(self, path, mode: str = "wb", suffix: str = ".tmp", *,
                 overwrite: bool = True, **kwargs):
        self.given = os.fspath(path)
        self.mode, self.suffix, self.overwrite, self.kwargs = mode, suffix, overwrite, kwargs
        self.path = None
        self._file = self._tmp = None

    def __enter__(self):
        if not self.overwrite and os.path.lexists(self.given):
            raise FileExistsError(errno.EEXIST, "a file is already there", self.given)
        target = self.target = resolve(self.given)
        self.path = target.path
        if target.kind == "through":
            self._file = self._open_through(target)
            return self._file
        fd, self._tmp = tempfile.mkstemp(prefix=".npmdn-", suffix=self.suffix,
                                         dir=os.path.dirname(target.path))
        try:
            self._file = os.fdopen(fd, self.mode, **self.kwargs)
        except BaseException:
            os.close(fd)
            self._discard()
            raise
        return self._file

    def _open_through(self, target):
        for stream in (sys.stdout, sys.stderr):  # what we printed comes first
            with contextlib.suppress(Exception):
                stream.flush()
        if target.fd is not None:
            fd = os.dup(target.fd)
        else:  # no O_TRUNC, no O_CREAT: a FIFO or a device is written, never made
            fd = os.open(target.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            return os.fdopen(fd, self.mode.replace("+", ""), **self.kwargs)
        except BaseException:
            os.close(fd)
            raise

    def __exit__(self, exc_type, exc, tb):
        f = self._file
        if self._tmp is None:  # written through
            try:
                f.close()
            except BrokenPipeError:
                if exc_type is None:
                    raise
            return False
        if exc_type is not None:
            with contextlib.suppress(Exception):
                f.close()
            self._discard()
            return False
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            self._commit()
        except BaseException:
            with contextlib.suppress(Exception):
                f.close()
            self._discard()
            raise
        return False

    def _commit(self):
        target = self.target
        if target.kind == "file":
            os.chmod(self._tmp, target.mode)
        else:
            os.chmod(self._tmp, new_file_mode())
        if self.overwrite:
            os.replace(self._tmp, target.path)
            self._tmp = None
            return
        # never replace: the name is taken by a link, which fails if it exists
        try:
            os.link(self._tmp, self.given, follow_symlinks=False)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "a file is already there", self.given) \
                from None
        except OSError as exc:  # a file system without hard links: claim, then replace
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV,
                                 errno.EMLINK, errno.ENOSYS):
                raise
            fd = os.open(self.given, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            os.replace(self._tmp, self.given)
            self._tmp = None
            return
        self._discard()
        self.path = os.path.abspath(self.given)

    def _discard(self):
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None


__all__ = ["atomic_open", "resolve", "check_writable", "new_file_mode", "Target"]
