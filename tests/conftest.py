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


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """A tiny demo dataset (generated once per test module) with its audio features cached."""
    import train
    from tests.train_helpers import TINY

    root = tmp_path_factory.mktemp("demo") / "data"
    warmup = tmp_path_factory.mktemp("warmup")
    assert train.main([*TINY, f"data.root={root}", f"run.dir={warmup}", "train.max_steps=1",
                       "train.eval_every=1"]) == 0
    return root
