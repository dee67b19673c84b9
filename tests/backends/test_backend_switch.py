"""Asking for the cupy backend where it cannot run is a clear error naming what is missing."""

import importlib.util

import pytest

from npmdn import backend


def _device_answers() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def test_without_cupy_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cupy" else real(name, *a))
    with pytest.raises(backend.BackendUnavailable, match="needs CuPy, which is not installed"):
        backend._load_cupy()


@pytest.mark.skipif(_device_answers(), reason="a CUDA device answers here: tests/test_gpu.py runs")
def test_without_a_device_names_what_is_missing():
    with pytest.raises(backend.BackendUnavailable) as info:
        backend.get_backend("cupy")
    msg = str(info.value)
    if importlib.util.find_spec("cupy") is None:
        assert "needs CuPy, which is not installed" in msg
    else:
        assert "needs a CUDA device" in msg or "CuPy failed to import" in msg
        import ctypes

        try:
            ctypes.CDLL("libcuda.so.1")
        except OSError:
            assert "no NVIDIA driver is installed here" in msg
    assert "cupy" not in backend.available_backends()
