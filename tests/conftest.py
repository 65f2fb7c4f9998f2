"""Test session setup: keep every cache (demo data, eGeMAPS tracks) inside a temporary folder."""

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    old = os.environ.get("ALN_CACHE_DIR")
    os.environ["ALN_CACHE_DIR"] = str(tmp_path_factory.mktemp("aln-cache"))
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    yield
    if old is None:
        os.environ.pop("ALN_CACHE_DIR", None)
    else:
        os.environ["ALN_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def one_torch_thread():
    """MTCNN's small convolutions gain nothing from intra-op threads, and on a machine shared with other
    jobs OpenMP threads waiting on each other make it 10-25x slower; restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
