"""``python docs/derivation_check.py`` as a reader runs it: it exits 0, has one block
per section of docs/derivation.md with the page's titles in the page's order, every
check is below 1e-6, every kernel's agreement is printed and within 1e-10, and the
worked example printed on the page is the one the script computes. And the page's
figures: ``docs/make_figures.py`` draws them headless, and the page shows them."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "derivation.md"
NUMBER = r"(\d\.\de[+-]\d\d)"


def _has_compiler():
    spec = importlib.util.spec_from_file_location(
        "cuda_host_for_docs", ROOT / "tests" / "backends" / "cuda_host.py")
    host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host)
    return host.compiler() is not None


@pytest.fixture(scope="module")
def output():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "derivation_check.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _blocks(text):
    """{section number: the lines of its block} (14 is the summary)."""
    blocks, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^(\d+)\. ", line)
        if m:
            current = int(m.group(1))
            blocks[current] = [line]
        elif current is not None:
            blocks[current].append(line)
    return blocks


def test_one_block_per_section_in_the_page_s_order(output):
    titles = re.findall(r"^## (\d+\. .+)$", DOC.read_text(), re.MULTILINE)
    assert len(titles) == 14
    printed = [b[0] for b in _blocks(output).values()]
    assert printed[:13] == titles[:13]
    assert printed[13].startswith("14. Summary")


def test_every_check_below_1e_6(output):
    blocks = _blocks(output)
    for n in range(1, 14):
        errs = [float(m.group(1)) for line in blocks[n]
                if (m := re.match(r"^\s+check\s.*\s" + NUMBER + r"$", line))]
        assert errs, f"section {n} prints no check"
        assert max(errs) < 1e-6, blocks[n]


def test_kernels_agree_in_every_section(output):
    blocks = _blocks(output)
    host = "ready" if _has_compiler() else "skipped"
    assert f"cuda-host: {host}" in output
    for n in range(1, 14):
        numba = [float(m.group(1)) for line in blocks[n]
                 if (m := re.match(r"^\s+numba\s.*agrees to\s+" + NUMBER + "$", line))]
        assert numba and max(numba) < 1e-10, blocks[n]
        cuda = [float(m.group(1)) for line in blocks[n]
                if (m := re.match(r"^\s+cuda-host\s.*agrees to\s+" + NUMBER + "$", line))]
        if n in (8, 11):  # the trunk and the optimizer: NumPy code on CuPy arrays
            assert not cuda and any("cuda-host n/a" in line for line in blocks[n])
        elif host == "ready":
            assert cuda and max(cuda) < 1e-10, blocks[n]


def test_summary_rows(output):
    rows = [[c.strip() for c in line.split("|")] for line in _blocks(output)[14]
            if re.match(r"^\s+\d+ \|", line)]
    assert [int(r[0]) for r in rows] == list(range(1, 14))
    for n, kind, err, numba, cuda in rows:
        assert kind and float(err) < 1e-6, n
        assert float(numba) < 1e-10, n
        assert cuda in ("n/a", "skipped") or float(cuda) < 1e-10, n
    assert output.rstrip().endswith("of the reference: yes")


def test_the_page_s_worked_example_is_the_printed_one(output):
    block = re.search(r"```\n(worked example \(K = 2, D = 1, one row\):\n.*?)```",
                      DOC.read_text(), re.DOTALL)
    assert block, "derivation.md has no worked-example block"
    printed = {line.strip() for line in output.splitlines()}
    page = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(page) == 13
    missing = [line for line in page if line not in printed]
    assert not missing, missing


def test_figures_are_drawn_and_on_the_page(tmp_path):
    pytest.importorskip("matplotlib")
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "make_figures.py"), str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    page = DOC.read_text()
    for name in ("derivation-graph.png", "derivation-scale-gradient.png"):
        drawn = tmp_path / name
        assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and drawn.stat().st_size > 50_000
        assert (ROOT / "docs" / name).is_file() and f"]({name})" in page
