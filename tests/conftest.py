import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def ci_config() -> dict:
    with open(REPO / "configs" / "ci.yaml") as f:
        return copy.deepcopy(yaml.safe_load(f))
