"""Every CUDA source compiles for sm_80 and sm_90 with warnings as errors.

Runs wherever ``nvcc`` is installed, GPU or not (CI has none). Each ``.cu``
is compiled once per architecture per session, in a temporary directory.
The loader's own path, NVRTC on the inlined source as CuPy compiles it, is
checked too wherever CuPy's NVRTC bindings and libnvrtc are installed.
"""

import os
import shutil
import subprocess

import pytest

from npmdn._cuda import sources as ks

ARCHS = ["sm_80", "sm_90"]
NVCC_FLAGS = ["-std=c++17", "-Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra,-Werror"]


def _nvcc():
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    return None


@pytest.fixture(scope="session")
def nvcc_build(tmp_path_factory):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found (PATH, $CUDA_HOME/bin, $CUDA_PATH/bin, /usr/local/cuda/bin): "
                    "the CUDA sources cannot be compiled on this machine")
    root = tmp_path_factory.mktemp("nvcc")
    done = {}

    def build(cu, arch):
        if (cu, arch) not in done:
            obj = root / f"{cu.stem}_{arch}.o"
            cmd = [nvcc, f"-arch={arch}", "-c", *NVCC_FLAGS, str(cu), "-o", str(obj)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            done[cu, arch] = (cmd, res, obj)
        return done[cu, arch]

    return build


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cu", ks.cu_files(), ids=lambda p: p.name)
def test_nvcc_compiles_without_warnings(nvcc_build, cu, arch):
    cmd, res, obj = nvcc_build(cu, arch)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}{res.stderr}"
    assert "warning" not in (res.stdout + res.stderr).lower(), res.stdout + res.stderr
    assert obj.stat().st_size > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_nvcc_object_holds_every_kernel(nvcc_build, arch):
    """The loader's kernel names, for both dtypes, are all in the compiled module."""
    _, res, obj = nvcc_build(ks.kernel_dir() / ks.KERNEL_FILE, arch)
    assert res.returncode == 0, res.stderr
    blob = obj.read_bytes()
    missing = [n for n in ks.kernel_names() if n.encode() not in blob]
    assert not missing, f"kernels missing from {obj.name}: {missing}"


def test_cu_files_found():
    assert ks.KERNEL_FILE in [p.name for p in ks.cu_files()]


# ------------------------------------------------------------------ NVRTC path


@pytest.fixture(scope="session")
def nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc as lib

        lib.getVersion()
    except Exception as exc:  # CuPy absent, or no libnvrtc for it to load
        pytest.skip("NVRTC is not available here (needs CuPy and libnvrtc, e.g. pip install "
                    f"cupy-cuda13x nvidia-cuda-nvrtc): {type(exc).__name__}: {exc}")
    return lib


@pytest.mark.parametrize("arch", ARCHS)
def test_nvrtc_compiles_the_loader_source(nvrtc, arch):
    """The exact text and options npmdn._cuda.kernels hands to CuPy's RawModule.

    NVRTC has no system headers, so this catches what nvcc would not: an
    include or a host-only function reaching the device code.
    """
    from npmdn._cuda.kernels import NVRTC_OPTIONS

    src = ks.source()
    assert '#include "' not in src  # the header is inlined
    # CuPy adds these itself (cupy/cuda/compiler.py): flush-to-zero, the
    # architecture, device code by default
    opts = [*NVRTC_OPTIONS, "-ftz=true", f"-arch={arch}", "--device-as-default-execution-space"]
    prog = nvrtc.createProgram(src, ks.KERNEL_FILE, (), ())
    try:
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as exc:
            pytest.fail(f"NVRTC failed: {exc}\n{nvrtc.getProgramLog(prog)}")
        log = nvrtc.getProgramLog(prog)
        assert "warning" not in log.lower(), log
        cubin = nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)
    missing = [n for n in ks.kernel_names() if n.encode() not in cubin]
    assert not missing, f"kernels missing from the NVRTC build: {missing}"
