"""Fixtures for every test folder; shared inputs live in ``cases.py``, loop
versions of the math in ``naive.py`` (both importable from any folder)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # cases, naive


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
