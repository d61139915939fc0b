import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rl import config

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["default", "ci", "paper", "tutorial"])
def test_shipped_configs_are_valid(name):
    cfg = config.load(REPO / "configs" / f"{name}.yaml")
    assert cfg["study"] == name
    assert cfg["env"]["id"] == "InvertedDoublePendulum-v5"


def test_paper_config_is_the_full_study():
    cfg = config.load(REPO / "configs" / "paper.yaml")
    assert len(cfg["seeds"]) >= 10
    assert cfg["ppo"]["total_frames"] >= 1_000_000


def test_defaults_are_filled(ci_config):
    cfg = config.validate({"study": "x", "seeds": [0]})
    assert cfg["ppo"]["clip_epsilon"] == 0.2
    assert cfg["mlflow"]["tracking_uri"] is None
    assert cfg["evaluation"]["episodes"] == 10
    before = yaml.safe_dump(ci_config)
    config.validate(ci_config)
    assert yaml.safe_dump(ci_config) == before


def _set(cfg, dotted, value):
    *parents, last = dotted.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


BAD = [
    ("ppo.learning_rate", 0.1, "ppo.learning_rate"),  # unknown key
    ("colour", "red", "colour"),  # unknown top-level key
    ("ppo.lr", "fast", "ppo.lr"),  # wrong type
    ("ppo.lr", 0, "ppo.lr"),  # impossible value
    ("seeds", [], "seeds"),  # zero seeds
    ("seeds", [1, 1], "seeds"),  # duplicate seeds
    ("device", "tpu", "device"),  # not in enum
    ("ppo.gamma", 1.5, "ppo.gamma"),
    ("ppo.total_frames", 2000, "ppo.total_frames"),  # not a multiple of the batch
    ("ppo.frames_per_batch", 511, "ppo.frames_per_batch"),  # not a multiple of num_envs
    ("ppo.minibatch_size", 1024, "ppo.minibatch_size"),  # larger than the batch
    ("study", "has space", "study"),
    ("env.num_envs", 0, "env.num_envs"),
]


@pytest.mark.parametrize(("key", "value", "named"), BAD, ids=[b[0] + "=" + repr(b[1]) for b in BAD])
def test_bad_config_names_the_key(ci_config, key, value, named):
    _set(ci_config, key, value)
    with pytest.raises(config.ConfigError) as err:
        config.validate(ci_config)
    assert f"'{named}'" in str(err.value)


def test_missing_required_key_is_named():
    with pytest.raises(config.ConfigError, match="'seeds'"):
        config.validate({"study": "x"})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: [unclosed")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.load(bad)


def test_config_hash_ignores_key_order():
    a = config.validate({"study": "x", "seeds": [0, 1]})
    b = dict(reversed(list(a.items())))
    assert config.config_hash(a) == config.config_hash(b)
    c = config.validate({"study": "x", "seeds": [0, 2]})
    assert config.config_hash(a) != config.config_hash(c)


def test_flatten():
    assert config.flatten({"a": {"b": 1, "c": {"d": 2}}, "e": [1, 2]}) == {
        "a.b": 1,
        "a.c.d": 2,
        "e": "[1, 2]",
    }


def test_workflow_schema_is_the_package_schema():
    """One source of truth: the workflow validates with the very file the package ships."""
    wf = REPO / "workflow" / "schemas" / "config.schema.yaml"
    assert wf.resolve() == config.SCHEMA_PATH.resolve()


def test_cli_rejects_bad_config_before_any_work(tmp_path, ci_config):
    ci_config["ppo"]["lr"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(ci_config))
    out = tmp_path / "stats.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl",
            "obs-norm-stats",
            "--config",
            str(path),
            "--seed",
            "0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "'ppo.lr'" in proc.stderr
    assert not out.exists()
