import subprocess
import sys

import pytest
import yaml

from rl.core import config

from support import REPO


@pytest.mark.parametrize("name", ["default", "ci", "ci-variants", "paper", "tutorial"])
def test_shipped_configs_are_valid(name):
    cfg = config.load(REPO / "configs" / f"{name}.yaml")
    assert cfg["study"] == name
    assert cfg["env"]["id"] == "InvertedDoublePendulum-v5"


def test_paper_config_is_the_full_study():
    cfg = config.load(REPO / "configs" / "paper.yaml")
    assert len(cfg["seeds"]) >= 10
    # the tuned recipe must solve within 1M frames and stay solved to the end of its budget
    assert 200_000 <= cfg["ppo"]["total_frames"] <= 1_000_000 and cfg["ppo"]["anneal_lr"]


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


# ---------------------------------------------------------------------------- variants


def _with_variants(ci_config, *variants):
    return {**ci_config, "variants": list(variants)}


def test_variant_config_applies_overrides_and_fills_defaults(ci_config):
    raw = _with_variants(
        ci_config,
        {"name": "a"},
        {"name": "b", "overrides": {"ppo": {"lr": 0.001}, "env": {"num_envs": 1}}},
    )
    cfg = config.validate(raw)
    a, b = config.variant_config(cfg, "a"), config.variant_config(cfg, "b")
    assert "variants" not in a and "variants" not in b
    assert a["ppo"]["lr"] == 0.0003 and b["ppo"]["lr"] == 0.001
    assert b["env"]["num_envs"] == 1 and b["ppo"]["num_epochs"] == ci_config["ppo"]["num_epochs"]
    assert config.config_hash(a) != config.config_hash(b)
    assert config.variant_names(cfg) == ["a", "b"]
    assert config.variant_names(cfg, "pendulum") == ["a", "b"]


def test_a_study_without_variants_is_its_own_default_variant(ci_config):
    cfg = config.validate(ci_config)
    assert "variants" not in cfg  # no default: the resolved config is unchanged
    assert config.variant_names(cfg) == ["default"]
    assert config.variant_config(cfg, "default") == cfg
    with pytest.raises(config.ConfigError, match="declares no variants"):
        config.variant_config(cfg, "tuned")


@pytest.mark.parametrize(
    "variant, named",
    [
        ({"name": "x", "overrides": {"seeds": [5]}}, "variants[x].overrides.seeds"),
        ({"name": "x", "overrides": {"study": "other"}}, "variants[x].overrides.study"),
        ({"name": "x", "overrides": {"ppo": {"lr": -1}}}, "variant 'x'"),
        ({"name": "x", "overrides": {"ppo": {"lrr": 1}}}, "'ppo.lrr'"),
        ({"name": "x", "overrides": {"env": {"num_envs": 3}}}, "ppo.frames_per_batch"),
        ({"name": "bad name"}, "'variants.0.name'"),
        ({"name": "x", "studies": ["dqn"]}, "'variants.0.studies.0'"),
    ],
)
def test_bad_variant_is_named(ci_config, variant, named):
    with pytest.raises(config.ConfigError) as err:
        config.validate(_with_variants(ci_config, variant))
    assert named in str(err.value)


def test_duplicate_variants_and_a_bad_comparison_pair_are_refused(ci_config):
    with pytest.raises(config.ConfigError, match=r"\['a'\] appear more than once"):
        config.validate(_with_variants(ci_config, {"name": "a"}, {"name": "a"}))
    raw = _with_variants(ci_config, {"name": "a"}, {"name": "b", "studies": ["pendulum"]})
    raw["aggregate"] = {"compare": ["a", "b"]}
    with pytest.raises(config.ConfigError, match="'aggregate.compare'.*'b' is not one of"):
        config.validate(raw)


def test_results_folder_guard_works_per_variant(tmp_path, ci_config):
    old = config.validate(_with_variants(ci_config, {"name": "a"}))
    path = tmp_path / "config.yaml"
    path.write_text(config.dump(old))
    # a new variant, a new seed: nothing made before changes
    grown = config.validate(
        {
            **_with_variants(
                ci_config, {"name": "a"}, {"name": "b", "overrides": {"ppo": {"lr": 1.0}}}
            ),
            "seeds": [0, 1, 2],
        }
    )
    config.check_same_study(grown, path)
    # a changed variant would mix two configurations in its folder
    changed = config.validate(
        _with_variants(ci_config, {"name": "a", "overrides": {"ppo": {"lr": 1.0}}})
    )
    with pytest.raises(config.ConfigError, match=r"a:ppo\.lr"):
        config.check_same_study(changed, path)
    # a study without variants that gains some keeps its `default` folder apart
    plain = tmp_path / "plain.yaml"
    plain.write_text(config.dump(config.validate(ci_config)))
    config.check_same_study(changed, plain)
    # ...and keeps it when one variant is `default` with the old config
    kept = config.validate(_with_variants(ci_config, {"name": "default"}, {"name": "b"}))
    config.check_same_study(kept, plain)
    ci_config["ppo"]["lr"] = 0.5
    moved = config.validate(_with_variants(ci_config, {"name": "default"}, {"name": "b"}))
    with pytest.raises(config.ConfigError, match=r"default:ppo\.lr"):
        config.check_same_study(moved, plain)


def test_ci_variants_and_paper_declare_two_ppo_variants():
    ci = config.load(REPO / "configs" / "ci-variants.yaml")
    assert config.variant_names(ci, "ppo") == ["tuned", "tutorial"]
    assert config.variant_names(ci, "pendulum") == ["tuned"]
    paper = config.load(REPO / "configs" / "paper.yaml")
    assert set(config.variant_names(paper, "ppo")) == {"tuned", "tutorial"}
    tutorial = config.variant_config(paper, "tutorial")
    # the tutorial's hyper-parameters (reference/ppo_inverted_double_pendulum_tutorial.txt)
    assert tutorial["env"]["num_envs"] == 1
    p = tutorial["ppo"]
    assert (p["frames_per_batch"], p["num_epochs"], p["minibatch_size"]) == (1000, 10, 64)
    assert (p["lr"], p["gamma"], p["lmbda"], p["clip_epsilon"]) == (3e-4, 0.99, 0.95, 0.2)
    # and its own budget (total_frames = 50_000), full-length training episodes
    assert p["total_frames"] == 50_000 and p["train_episode_steps"] is None


def test_overlap_needs_one_collector_process_on_a_cpu_backend(ci_config):
    ci_config["ppo"].update(overlap=True, collector_workers=2)
    with pytest.raises(config.ConfigError, match=r"ppo.overlap.*collector_workers: 1"):
        config.validate(ci_config)
    ci_config["ppo"]["collector_workers"] = 1
    cfg = config.validate(ci_config)
    assert config.train_cores(cfg) == 2  # the collector process and the trainer
