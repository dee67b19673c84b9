"""Writing files so that nothing a user saved is lost or half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile


def new_file_mode() -> int:
    """The permissions a newly created file gets under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", suffix: str = ".tmp", **kwargs):
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    The data is flushed and fsynced before the rename, so ``path`` holds either
    its old content or the complete new one, never a partial file; on any error
    the temporary file is removed and ``path`` is untouched. The file gets the
    ordinary permissions of a new file (``mkstemp`` alone would make it private).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".npmdn-", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
