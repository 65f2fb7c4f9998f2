"""Test session setup: keep every cache (demo data, eGeMAPS tracks) inside a temporary folder."""

import os

import pytest


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
