from dataclasses import dataclass, field

import pytest

from zoo.config import ConfigError, apply_overrides, load_config, parse_override, to_dict, yaml_load


@dataclass(frozen=True)
class Optim:
    lr: float = 0.1
    name: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass(frozen=True)
class Cfg:
    seed: int = 0
    amp: bool = False
    tags: list[str] = field(default_factory=list)
    optim: Optim = field(default_factory=Optim)
    limit: int | None = None


def test_defaults_yaml_and_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("seed: 3\noptim:\n  lr: 2\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\noptim:\n  name: lars\n")
    cfg = load_config(Cfg, child, ["optim.lr=0.5", "amp=true", "tags=[a, b]", "limit=null"])
    assert cfg == Cfg(seed=3, amp=True, tags=["a", "b"], optim=Optim(lr=0.5, name="lars"), limit=None)
    assert isinstance(load_config(Cfg, base).optim.lr, float)  # int 2 widened to float
    assert to_dict(cfg)["optim"] == {"lr": 0.5, "name": "lars", "betas": [0.9, 0.99]}


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", "unknown key 'optim.lrr'"),
        ("sede=1", "unknown key 'sede'"),
        ("seed=1.5", "key 'seed' expects an integer"),
        ("amp=1", "key 'amp' expects true/false"),
        ("optim.lr=fast", "key 'optim.lr' expects a number"),
        ("optim.betas=[1]", "key 'optim.betas' expects 2 items"),
        ("optim=3", "key 'optim' expects a mapping"),
    ],
)
def test_bad_keys_and_types_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, None, [override])


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  momentum: 0.9\n")
    with pytest.raises(ConfigError, match=f"{bad}.*unknown key 'optim.momentum'"):
        load_config(Cfg, bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Cfg, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Cfg, tmp_path / "list.yaml")


def test_override_parsing():
    assert parse_override("a.b=1e-3") == (["a", "b"], 1e-3)
    with pytest.raises(ConfigError, match="must look like"):
        parse_override("novalue")
    with pytest.raises(ConfigError, match="'seed' is not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_configs_are_frozen():
    cfg = load_config(Cfg)
    with pytest.raises(AttributeError):
        cfg.seed = 4  # type: ignore[misc]


def test_duplicate_keys_are_refused_anywhere(tmp_path):
    """Issue 24.1: PyYAML keeps the last of two equal keys; every config and suite load refuses them instead."""
    nested = tmp_path / "nested.yaml"
    nested.write_text("seed: 1\noptim:\n  lr: 0.1\n  name: sgd\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=rf"{nested}: duplicate key 'lr' on line 3 and line 5"):
        load_config(Cfg, nested)
    top = tmp_path / "top.yaml"
    top.write_text("seed: 1\namp: true\nseed: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'seed' on line 1 and line 3"):
        load_config(Cfg, top)
    merged = tmp_path / "merged.yaml"  # a YAML merge (<<) is an override by design, not a duplicate
    merged.write_text("base: &b {lr: 0.1, name: sgd}\noptim:\n  <<: *b\n  lr: 0.3\n")
    assert yaml_load(merged.read_text())["optim"] == {"lr": 0.3, "name": "sgd"}


def test_detection_preset_refuses_duplicate_keys(tmp_path):
    from downstream.detection.config import load_preset

    preset = tmp_path / "p.yaml"
    preset.write_text("base: COCO-Detection/x.yaml\ntrials: 1\ntrials: 3\n")
    with pytest.raises(ValueError, match="duplicate key 'trials' on line 2 and line 3"):
        load_preset(str(preset))
