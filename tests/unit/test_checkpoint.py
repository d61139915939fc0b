import pickle

import pytest
import torch

from rl.core import checkpoint


def test_roundtrip(tmp_path):
    path = tmp_path / "w.pt"
    checkpoint.save(path, {"w": torch.arange(3.0), "frames": 5})
    got = checkpoint.load(path, "weights")
    assert got["frames"] == 5 and torch.equal(got["w"], torch.arange(3.0))


def test_truncated_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "w.pt"
    checkpoint.save(path, {"w": torch.randn(1000)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt, truncated"):
        checkpoint.load(path, "trained policy")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a file that would run code on load is rejected, not executed."""
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"actor": Evil()}, f)
    with pytest.raises(ValueError, match="not a plain weights file"):
        checkpoint.load(path, "trained policy")
