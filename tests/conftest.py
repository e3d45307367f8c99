import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
    """A TFDS data dir holding the embedded synthetic dataset, prepared once per session."""
    return str(tmp_path_factory.mktemp("tfds_data"))
