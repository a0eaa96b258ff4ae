import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from diffucode.testing import random_model

    return random_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_pad_model_dir(tmp_path_factory) -> Path:
    from diffucode.testing import random_model

    return random_model(tmp_path_factory.mktemp("tinypad") / "model", seed=1, pad_tail=True)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    from diffucode.loading import load_engine

    return load_engine(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_pad_engine(tiny_pad_model_dir):
    from diffucode.loading import load_engine

    return load_engine(tiny_pad_model_dir)
