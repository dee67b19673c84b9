"""The CUDA sources are found from a checkout and from an installed wheel."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from npmdn import config
from npmdn._cuda import sources as ks

REPO = Path(__file__).resolve().parents[2]


def test_source_inlines_the_header():
    src = ks.source()
    header = (ks.kernel_dir() / ks.HEADER_FILE).read_text()
    assert header in src and '#include "' not in src
    assert ks.threads_per_block() == 256
    assert sorted(ks.kernel_names()) == sorted(
        f"mdn_{op}{full}_{t}" for op in ("nll_grad", "log_prob", "sample")
        for full in ("", "_full") for t in ("f32", "f64"))


def test_env_override_and_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_KERNEL_DIR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="were not found; looked in: " + str(tmp_path)):
        ks.kernel_dir()
    shutil.copy(REPO / "kernels" / ks.KERNEL_FILE, tmp_path)
    (tmp_path / ks.HEADER_FILE).write_text("// edited header\n")
    assert ks.kernel_dir() == tmp_path
    assert "// edited header" in ks.source()


def test_wheel_ships_the_kernels(tmp_path):
    """Build a wheel from a copy of the tree (so no build/ lands in the checkout)."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src)
    for name in ("npmdn", "kernels"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
           "-q", "-w", str(tmp_path / "whl")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    (whl,) = (tmp_path / "whl").glob("npmdn-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    for f in ("mdn_kernels.cu", "mdn_math.cuh"):
        assert f"npmdn/kernels/{f}" in names, names
    # every module of the package, its subpackages included
    modules = {str(p.relative_to(REPO)) for p in (REPO / "npmdn").rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))
    # installed layout: the loader finds the sources inside the package
    site = tmp_path / "site"
    zipfile.ZipFile(whl).extractall(site)
    code = ("import npmdn._cuda.sources as k; d = k.kernel_dir(); "
            "assert len(k.source()) > 1000; print(d)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()) == site / "npmdn" / "kernels"
