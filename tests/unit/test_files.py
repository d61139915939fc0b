import json

import pytest

from rl.core import files


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "sub" / "x.json"
    files.write_json(path, {"a": 1})
    files.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "x.txt"
    files.write_text(path, "old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        files.write_with(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_read_json_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="Missing observation statistics"):
        files.read_json(tmp_path / "none.json", "observation statistics")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="Corrupt observation statistics"):
        files.read_json(bad, "observation statistics")
