"""The background compile of a first run (npmdn._numba.warm): it starts only when a
kernel is missing from the disk cache, and whatever happens to it costs this process
time only, never a result or a lingering process."""

import json
import os
import subprocess
import sys
import time

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
    assert warm.start(np.float64, ["density_kernel"]) == ("density_kernel",)
    job = warm._jobs[0]
    got = nk.log_prob(*_args())  # waits for the child, then compiles or loads here
    np.testing.assert_array_equal(got, want)
    job.reaper.join(10)
    assert job.proc.returncode == 3  # reaped: no zombie


def test_a_hanging_background_compile_is_stopped(fake_child, monkeypatch):
    fake_child("exec sleep 600")
    monkeypatch.setattr(warm, "WAIT_LIMIT", 0.5)
    assert warm.start(np.float64, ["density_kernel"]) == ("density_kernel",)
    job = warm._jobs[0]
    nk.log_prob(*_args())
    assert job.proc.returncode is not None  # killed and reaped


def test_a_wait_ends_when_the_kernel_is_in_the_cache(fake_child, monkeypatch):
    """The background process compiles several kernels in turn: a wait for the first
    ends once it is in the disk cache, not when the process ends."""
    fake_child("exec sleep 600")
    assert warm.start(np.float64, ["head_kernel", "sample_kernel"]) == ("head_kernel",
                                                                       "sample_kernel")
    job = warm._jobs[0]
    looks = []

    def cached(name, dtype):  # head_kernel "written" at the third look
        looks.append(name)
        return name == "head_kernel" and len(looks) >= 3

    monkeypatch.setattr(warm, "is_cached", cached)
    said = []
    monkeypatch.setattr(nk, "_notes", [said.append])
    t0 = time.monotonic()
    warm.wait_for("head_kernel")
    assert time.monotonic() - t0 < 5 and job.running()  # the process goes on
    assert len(looks) == 3 and len(said) == 1
    warm.wait_for("head_kernel")  # in the cache: no wait, nothing said
    assert len(said) == 1


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


_FIT_CODE = (
    "import hashlib, json, numpy as np, npmdn\n"
    "from npmdn._numba import kernels as nk, warm, head, sample, train\n"
    "rng = np.random.default_rng(0)\n"
    "x = rng.normal(size=(300, 1)); y = np.sin(x)\n"
    "m = npmdn.MDN(1, 1, 3, hidden=(8,), backend='numba', seed=0)\n"
    "h1 = m.fit(x, y, epochs=2, verbose=False, validation_split=0.0)\n"
    "h2 = m.fit(x, y, epochs=3, batch_size=300, verbose=False, validation_split=0.0)\n"
    "started = [list(j.names) for j in warm._jobs]\n"
    "lp = m.log_prob(x, y); s = m.sample(x, 2, seed=1)\n"
    "rc = [j.proc.wait() for j in warm._jobs]\n"
    "st = [head.density_kernel.stats, sample.sample_kernel.stats,\n"
    "      train.train_epoch_serial.stats]\n"
    "bits = [hashlib.sha256(a.tobytes()).hexdigest() for a in (m.net.params, lp, s)]\n"
    "hist = [h1.train_nll, h2.train_nll, h2.effective_components, h2.narrowest_sigma]\n"
    "print(json.dumps([started, rc, [sum(s.cache_misses.values()) for s in st],\n"
    "                  [sum(s.cache_hits.values()) for s in st], bits, repr(hist)]))\n"
)


def _fit_in_fresh_cache(cache_dir, background):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    env.pop(config.ENV_BACKGROUND_COMPILE, None)
    if not background:
        env[config.ENV_BACKGROUND_COMPILE] = "0"
    out = subprocess.run([sys.executable, "-c", _FIT_CODE], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_a_first_fit_loads_the_kernels_the_background_compiled(tmp_path):
    """In a fresh cache, a fit has the training kernel compiled in a process of its own
    (its call tree optimised once: npmdn._numba.compiling) and the minibatch order's,
    the log-density and sampling kernels in another (not the gradient's head kernel,
    which a fused fit never calls), and loads them from the cache instead of compiling;
    it trains to the same bits, and the same history, as a process that compiled every
    kernel itself the ordinary way, and its log-densities and samples are the same bits."""
    started, rc, misses, hits, bits, hist = _fit_in_fresh_cache(tmp_path / "a", True)
    assert started == [["shuffle_arange", "density_kernel", "sample_kernel"],
                       ["train_epoch_serial"]]
    assert rc == [0, 0]
    assert misses == [0, 0, 0] and hits == [1, 1, 1]
    started, rc, misses, hits, bits_here, hist_here = _fit_in_fresh_cache(tmp_path / "b", False)
    assert started == [] and misses == [1, 1, 1] and hits == [0, 0, 0]
    assert bits == bits_here
    assert hist == hist_here


def test_the_training_kernel_waits_for_its_own_process(fake_child, monkeypatch):
    """Before compiling a training kernel this process starts one process for it and
    waits; when that process fails, this one compiles the kernel itself."""
    from npmdn._numba import train

    fake_child("exit 5")
    monkeypatch.setattr(train, "_entries", {})
    said = []
    monkeypatch.setattr(nk, "_notes", [said.append])
    warm.before_compile("train_epoch_serial", np.dtype(np.float64))
    assert [job.names for job in warm._jobs] == [("train_epoch_serial",)]
    assert warm._jobs[0].proc.returncode == 5  # waited for
    assert said == ["compiling the numba training kernel for this machine in a separate "
                    "process (first run only, about 9 s)..."]
    # compiled or loaded here now; nothing starts for it again
    train._entry(np.float64, False)
    assert warm.start(np.float64, ["train_epoch_serial"]) == ()


def test_compiling_once_optimises_only_the_kernel_and_restores_numba(monkeypatch):
    """Under compiling.once the callees' libraries skip the full module optimisation
    and get no machine code, the kernel's own do not, a nested window keeps the outer
    one, and Numba's methods are back afterwards."""
    from numba import njit
    from numba.core.codegen import CPUCodeLibrary, JITCPUCodegen

    from npmdn._numba import compiling

    original = CPUCodeLibrary._optimize_final_module
    finalize, set_env = CPUCodeLibrary._finalize_final_module, JITCPUCodegen.set_env
    with compiling.once(njit(lambda a: a)):
        assert CPUCodeLibrary._optimize_final_module is not original
        assert CPUCodeLibrary._finalize_final_module is not finalize
        assert JITCPUCodegen.set_env is not set_env
    assert CPUCodeLibrary._optimize_final_module is original
    assert CPUCodeLibrary._finalize_final_module is finalize
    assert JITCPUCodegen.set_env is set_env

    optimised, compiled = [], []

    def spy(library):
        optimised.append(library.name)
        original(library)

    def spy_finalize(library):
        compiled.append(library.name)
        finalize(library)

    # (restored to the originals at the end, whatever happens)
    monkeypatch.setattr(CPUCodeLibrary, "_optimize_final_module", original)
    monkeypatch.setattr(CPUCodeLibrary, "_finalize_final_module", finalize)
    monkeypatch.setattr(compiling, "_full", spy)
    monkeypatch.setattr(compiling, "_finalize", spy_finalize)

    @njit
    def callee(a):
        return a * 2.0 + 1.0

    @njit
    def kernel(a):
        return callee(a) - 1.0

    with compiling.once(kernel):
        with compiling.once(kernel):  # nested: still in the window after the inner one
            pass
        assert CPUCodeLibrary._optimize_final_module is compiling._optimize_final_module
        assert kernel(np.float64(3.0)) == 6.0
    assert CPUCodeLibrary._optimize_final_module is spy  # what once found there
    assert any(name.endswith("kernel") for name in optimised)
    assert not any(name.endswith("callee") for name in optimised)
    # machine code for the kernel's module only (it holds the callee's IR), and
    # wrappers for Python and C callers for the kernel only
    assert any(name.endswith("kernel") for name in compiled)
    assert not any(name.endswith("callee") for name in compiled)
    (callee_ir,) = (cres.library.get_llvm_str() for cres in callee.overloads.values())
    (kernel_ir,) = (cres.library.get_llvm_str() for cres in kernel.overloads.values())
    assert "cpython" not in callee_ir and "cfunc." not in callee_ir
    assert "cpython" in kernel_ir and "cfunc." in kernel_ir
