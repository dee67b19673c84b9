"""Each example script runs headless and writes its figure (with --quick: few epochs, so
this checks that the scripts work, not how well they fit); the default output name
never replaces an existing file."""

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "examples").glob("[0-9]*.py"))
PNG = b"\x89PNG\r\n\x1a\n"


def run_example(script, *args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return subprocess.run([sys.executable, str(script), *args, "--quick"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_there_is_one_script_per_seed_tutorial():
    # 01-04: the seed tutorials; 05: the scikit-learn pipeline
    assert [s.stem[:2] for s in SCRIPTS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_example_writes_its_figure(script, tmp_path):
    out = tmp_path / "figure.png"
    proc = run_example(script, out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"figure written to {out}" in proc.stdout
    assert out.read_bytes()[:8] == PNG
    assert out.stat().st_size > 20_000


def test_default_output_is_never_overwritten(tmp_path):
    script = ROOT / "examples" / "03_heteroscedastic_noise.py"
    (tmp_path / "heteroscedastic-noise.png").write_bytes(b"keep me")
    proc = run_example(script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "heteroscedastic-noise.png").read_bytes() == b"keep me"
    assert (tmp_path / "heteroscedastic-noise-2.png").read_bytes()[:8] == PNG
