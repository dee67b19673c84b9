"""Compile kernels into Numba's disk cache in other processes.

On a fresh install (or after an upgrade) a fit on the numba backend compiles
its training kernel and, once trained, the log-likelihood and sampling
kernels, several seconds each. Numba compiles under one global lock, so two
threads of a process cannot compile side by side; two processes can, into the
same on-disk cache. So when a fit starts (:func:`plan`, the numba backend's
``fused_fit``) and the kernels it will need after training are not in the
cache, :func:`start` launches a background process,
``python -c "...main(sys.argv[1:])" DTYPE NAME...`` (this module's :func:`main`,
imported from this very install), that compiles them (and writes them to the
cache) while this process gets its training kernel and trains. When this
process needs one of them, :func:`wait_for` waits for that process, and Numba
then loads the kernel from the cache instead of compiling it.

The training kernel itself is needed at once, and it too is compiled in a
process of its own while this one waits (:func:`before_compile`): a process
that only compiles may optimise the kernel's call tree once instead of once
per level, and give machine code and wrappers to the kernel alone
(:mod:`npmdn._numba.compiling`: about half the compile time), and this process
then loads the same machine code every later run loads. The
two processes use the machine's two cores side by side.

Why it is safe:

* A kernel compiled in the other process is the same function with the same
  signature, and Numba's cache key (signature, CPU, bytecode hash) and source
  stamp make a process load only what it would itself have compiled. Numba
  writes its cache files to a temporary name and renames them
  (``IndexDataCacheFile._open_for_write``), so no process reads half a file; a
  data file that the index names but that is not there yet reads as a miss.
* Two processes never compile the same function at once: :func:`wait_for`
  waits for a background process before this one compiles any function that
  process is compiling (whatever the dtype: two processes adding different
  signatures to one index at the same time could mix up their entries).
* Whatever goes wrong there costs time only: a background process that fails,
  is killed, cannot write the cache (a read-only install falls back to Numba's
  user-wide cache directory in both processes alike) or does not start leaves
  this process to compile the kernel itself when it needs it, as it would
  without this module. A wait lasts at most :data:`WAIT_LIMIT` seconds;
  then the background process is stopped and this one compiles.
* A reaper thread waits for the process, so it never lingers as a zombie; one
  still compiling when this process exits finishes on its own (Ctrl-C reaches
  it too: it stays in the terminal's process group).
* Nothing starts when every kernel is compiled or cached (:func:`is_cached`
  reads Numba's small index file; a wrong answer only costs time), with
  ``NPMDN_BACKGROUND_COMPILE=0``, or on a single-core machine (then this
  process compiles each kernel itself, the ordinary way, when it needs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np

from .. import config
from ..fullcov import is_full
from . import compiling, kernels, permute, train

# seconds to wait for a background compile before compiling here instead
WAIT_LIMIT = 120.0
# how often a wait looks at the disk cache (Numba writes a kernel's data file, then
# its index entry, each by an atomic rename: an entry in the index is a whole kernel)
POLL_SECONDS = 0.05

_jobs: list = []  # the background processes this process started (_Job)
_lock = threading.Lock()


class _Job:
    def __init__(self, proc, dtype, names):
        self.proc, self.dtype, self.names = proc, dtype, tuple(names)
        self.started = time.monotonic()
        self.reaper = threading.Thread(target=self._reap, daemon=True,
                                       name="npmdn-compile-reaper")
        self.reaper.start()

    def _reap(self):
        try:
            self.proc.wait()
        except Exception:  # noqa: BLE001 - the waiting side reaps it then
            pass

    def running(self) -> bool:
        return self.proc.poll() is None

    def seconds_left(self, name) -> float:
        """About how long until ``name`` is in the cache (the kernels compile in order)."""
        upto = self.names[: self.names.index(name) + 1]
        return (sum(kernels.compile_seconds(n, apart=True) for n in upto)
                - (time.monotonic() - self.started))


def enabled() -> bool:
    """Whether background compiles may start here (see the module docstring)."""
    if os.environ.get(config.ENV_BACKGROUND_COMPILE, "1").strip() == "0":
        return False
    if not sys.executable or getattr(sys, "frozen", False):
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return cores >= 2


# the training kernels, by name: whether each is the threaded one
_TRAINING = {"train_epoch_serial": False, "train_epoch_parallel": True}


# the minibatch order's kernel (npmdn._numba.permute): one signature, whatever the dtype
_PERMUTE = "shuffle_arange"


def _dispatcher(name):
    if name == _PERMUTE:
        return permute.shuffle_arange
    return getattr(train, name) if name in _TRAINING else kernels.dispatcher(name)


def _signature(name, dtype):
    if name == _PERMUTE:
        return permute.ARGS
    return train._sig(np.dtype(dtype)) if name in _TRAINING else kernels.signature(name, dtype)


def _compiled_here(name, dtype) -> bool:
    if name == _PERMUTE:
        return permute.compiled()
    if name in _TRAINING:
        return (np.dtype(dtype), _TRAINING[name]) in train._entries
    return (name, np.dtype(dtype)) in kernels._entries


def is_cached(name, dtype) -> bool:
    """Whether Numba's disk cache holds ``name`` for ``dtype`` (without loading it).

    Reads the kernel's index file and looks for the key Numba itself would
    look up. Any surprise reads as True: then nothing starts and this process
    compiles on demand, as without this module.
    """
    try:
        disp = _dispatcher(name)
        cache = disp._cache
        key = cache._index_key(_signature(name, dtype), disp.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - Numba internals differ: behave as before
        return True


def plan(net, head, opt, *args, **kwargs):
    """:func:`npmdn._numba.train.plan`, after starting the background compile of the
    kernels a fit uses later: the minibatch order's (:mod:`npmdn._numba.permute`; NumPy
    draws the same order until it is cached), the log-density's and the sampling kernel (the
    step loop's gradient kernel compiles in this process, which needs it at once; a
    full-covariance head compiles its own kernel there too)."""
    full = is_full(head[1], head[2])
    start(net.dtype, [_PERMUTE] + ([] if full else ["density_kernel"]) + ["sample_kernel"])
    return train.plan(net, head, opt, *args, **kwargs)


def start(dtype, names, quiet=False) -> tuple:
    """Compile the kernels ``names`` for ``dtype`` in a background process,
    those of them that are not compiled, cached or being compiled already, and
    say so unless ``quiet``. Returns the names it started on (maybe none)."""
    dtype = np.dtype(dtype)
    if not enabled():
        return ()
    with _lock:
        busy = {n for job in _jobs if job.running() for n in job.names}
        todo = [n for n in names if not _compiled_here(n, dtype) and n not in busy]
        todo = [n for n in todo if not is_cached(n, dtype)]
        if not todo:
            return ()
        env = {**os.environ, config.ENV_BACKGROUND_COMPILE: "0"}
        # this very npmdn, not one that the working directory would put first on the path
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = (f"import sys; sys.path.insert(0, {root!r}); "
                "from npmdn._numba.warm import main; sys.exit(main(sys.argv[1:]))")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, dtype.name, *todo],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=env, close_fds=True)
        except OSError:
            return ()
        _jobs.append(_Job(proc, dtype, todo))
    if not quiet:
        kernels.say(f"compiling the numba {_and([kernels.KERNELS[n] for n in todo])} "
                    f"kernel{'s' if len(todo) > 1 else ''} in the background (first run only)...")
    return tuple(todo)


def wait_for(name, quiet=False) -> None:
    """Return once no background process of this process is compiling ``name``:
    once ``name`` is in the disk cache (the process may go on with its other
    kernels) or the process has ended; saying so unless ``quiet``."""
    with _lock:
        jobs = [job for job in _jobs if name in job.names and job.running()]
    for job in jobs:
        if is_cached(name, job.dtype):
            continue
        left = job.seconds_left(name)
        if not quiet:
            kernels.say(f"waiting for the numba {kernels.KERNELS[name]} kernel, compiling in "
                        f"the background (first run only, about {max(1, round(left))} s)...")
        deadline = time.monotonic() + WAIT_LIMIT
        killed = False
        while job.running() and not is_cached(name, job.dtype):
            if time.monotonic() > deadline:
                job.proc.kill()  # this process compiles it instead
                killed = True
                break
            time.sleep(POLL_SECONDS)
        if killed or not job.running():
            job.proc.wait()  # (reaped; at once unless killed just now)


def busy(name) -> bool:
    """Whether a background process of this process is still compiling ``name`` (not
    yet in the disk cache)."""
    with _lock:
        jobs = [job for job in _jobs if name in job.names and job.running()]
    return any(not is_cached(name, job.dtype) for job in jobs)


def before_compile(name, dtype) -> None:
    """Before this process compiles the training kernel ``name`` for ``dtype``: have a
    separate process compile it into the disk cache, and wait for it (see the module
    docstring); this process then loads it. Without a background process (switched
    off, one core, it failed), this process compiles it itself afterwards."""
    if start(dtype, [name], quiet=True):
        kernels.say(f"compiling the numba {kernels.KERNELS[name]} kernel for this machine in "
                    f"a separate process (first run only, about "
                    f"{round(kernels.compile_seconds(name, apart=True))} s)...")
        wait_for(name, quiet=True)
    else:
        wait_for(name)


kernels.before_compile = wait_for
train.before_compile = before_compile
permute.busy = busy


def _and(words):
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def main(argv) -> int:
    """Compile the kernels ``NAME...`` for ``DTYPE`` (``argv``) into the disk cache,
    each with its call tree optimised once and machine code for the kernel alone
    (this process runs none of them: :mod:`npmdn._numba.compiling`)."""
    dtype = np.dtype(argv[0])
    for name in argv[1:]:
        with compiling.once(_dispatcher(name)):
            if name == _PERMUTE:
                permute.entry()
            elif name in _TRAINING:
                train._entry(dtype, _TRAINING[name])
            else:
                kernels._entry(name, dtype)
        if name in kernels._LAUNCHERS:
            kernels._launcher(name, dtype)
    return 0

