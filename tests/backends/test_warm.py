"""The background compile of a first run (npmdn._numba.warm): it starts only when a
kernel is missing from the disk cache, and whatever happens to it costs this process
time only, never a result or a lingering process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

from npmdn import config  # noqa: E402
from npmdn._numba import kernels as nk  # noqa: E402
from npmdn._numba import warm  # noqa: E402


@pytest.fixture
def fake_child(monkeypatch, tmp_path):
    """start() launches ``script`` (a shell script) instead of Python, as if nothing
    were cached; the jobs it starts are waited for afterwards."""

    def use(script):
        exe = tmp_path / "fake-python"
        exe.write_text("#!/bin/sh\n" + script + "\n")
        exe.chmod(0o755)
        monkeypatch.setattr(sys, "executable", str(exe))
        monkeypatch.setattr(warm, "is_cached", lambda name, dtype: False)
        monkeypatch.setattr(warm, "enabled", lambda: True)
        monkeypatch.setattr(nk, "_entries", {})
        monkeypatch.setattr(warm, "_jobs", [])

    yield use
    for job in warm._jobs:
        if job.proc.poll() is None:
            job.proc.kill()
        job.proc.wait()


def _args(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)), rng.normal(size=(n, 3, 1)), rng.normal(size=(n, 3, 1)),
            rng.normal(size=(n, 1)))


def test_a_failed_background_compile_costs_nothing_but_time(fake_child):
    fake_child("exit 3")
    want = nk.log_prob(*_args())  # (compiled or loaded before the fake child)
    nk._entries.clear()
    assert warm.start(np.float64, ["head_kernel"]) == ("head_kernel",)
    job = warm._jobs[0]
    got = nk.log_prob(*_args())  # waits for the child, then compiles or loads here
    np.testing.assert_array_equal(got, want)
    job.reaper.join(10)
    assert job.proc.returncode == 3  # reaped: no zombie


def test_a_hanging_background_compile_is_stopped(fake_child, monkeypatch):
    fake_child("exec sleep 600")
    monkeypatch.setattr(warm, "WAIT_LIMIT", 0.5)
    assert warm.start(np.float64, ["head_kernel"]) == ("head_kernel",)
    job = warm._jobs[0]
    nk.log_prob(*_args())
    assert job.proc.returncode is not None  # killed and reaped


def test_nothing_starts_twice_or_when_compiled(fake_child):
    fake_child("exec sleep 600")
    assert warm.start(np.float64, ["head_kernel", "sample_kernel"]) == ("head_kernel",
                                                                       "sample_kernel")
    assert warm.start(np.float64, ["head_kernel"]) == ()  # already under way
    nk._entries[("full_kernel", np.dtype(np.float64))] = object()
    assert warm.start(np.float64, ["full_kernel"]) == ()  # already compiled here
    assert len(warm._jobs) == 1


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(config.ENV_BACKGROUND_COMPILE, "0")
    monkeypatch.setattr(warm, "is_cached", lambda name, dtype: False)
    assert not warm.enabled()
    assert warm.start(np.float64, ["head_kernel"]) == ()


def test_is_cached_reads_numbas_index(tmp_path):
    """False in an empty cache, True once a process has compiled the kernel there."""
    code = (
        "import json, sys, numpy as np\n"
        "from npmdn._numba import kernels as nk, warm\n"
        "before = warm.is_cached('head_kernel', np.float64)\n"
        "if sys.argv[1] == '1': nk._entry('head_kernel', np.dtype(np.float64))\n"
        "print(json.dumps(before))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def run(compile_):
        out = subprocess.run([sys.executable, "-c", code, compile_], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert run("1") is False
    assert run("0") is True


@pytest.mark.slow
def test_a_first_fit_loads_the_kernels_the_background_compiled(tmp_path):
    """In a fresh cache, a fit starts one background compile of the head and sampling
    kernels; afterwards this process loads them from the cache instead of compiling."""
    code = (
        "import json, numpy as np, npmdn\n"
        "from npmdn._numba import kernels as nk, warm, head, sample\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.normal(size=(300, 1)); y = np.sin(x)\n"
        "m = npmdn.MDN(1, 1, 3, hidden=(8,), backend='numba', seed=0)\n"
        "m.fit(x, y, epochs=2, verbose=False, validation_split=0.0)\n"
        "started = [list(j.names) for j in warm._jobs]\n"
        "m.log_prob(x, y); m.sample(x, 2, seed=1)\n"
        "rc = [j.proc.wait() for j in warm._jobs]\n"
        "st = [head.head_kernel.stats, sample.sample_kernel.stats]\n"
        "print(json.dumps([started, rc, [sum(s.cache_misses.values()) for s in st],\n"
        "                  [sum(s.cache_hits.values()) for s in st]]))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop(config.ENV_BACKGROUND_COMPILE, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    started, rc, misses, hits = json.loads(out.stdout)
    assert started == [["head_kernel", "sample_kernel"]] and rc == [0]
    assert misses == [0, 0] and hits == [1, 1]
