from pathlib import Path

import pytest

from pretrain.config import PretrainConfig, derive, load_pretrain_config
from zoo.config import ConfigError, load_yaml, to_dict

CONFIGS = Path(__file__).resolve().parents[2] / "pretrain" / "configs"

VARIANTS = [
    "no-predictor",
    "predictor-lr-x1",
    "tau-0",
    "tau-0-predictor-lr-x1",
    "tau-0.9",
    "tau-0.99",
    "tau-0.999",
    "tau-1",
    "no-ema-predictor-lr-x10",
]


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_default_config_and_interface_names():
    cfg = load_pretrain_config(CONFIGS / "byol.yaml", [])
    assert isinstance(cfg, PretrainConfig)
    assert cfg.data.dataset == "shapes" and cfg.data.image_size == 32 and cfg.backbone.arch == "resnet18-w16"
    assert cfg.byol.predictor and cfg.byol.tau_schedule == "constant"  # README's recipe: 6 epochs, τ 0.9
    assert (cfg.byol.tau_base, cfg.byol.predictor_lr_mult, cfg.run.epochs) == (0.9, 10.0, 6)
    assert cfg.optim.min_lr_frac == 0.5
    # the paper's asymmetric views (Table 6)
    assert (cfg.augment.view1.blur_p, cfg.augment.view2.blur_p) == (1.0, 0.1)
    assert (cfg.augment.view1.solarize_p, cfg.augment.view2.solarize_p) == (0.0, 0.2)
    # colour is pure nuisance on shapes: strong jitter on both views (README, Pretraining)
    assert cfg.augment.view1.brightness == 0.8 and cfg.augment.view2.hue == 0.5
    # code defaults are the paper's values
    paper = PretrainConfig()
    assert (paper.byol.tau_base, paper.heads.projector_hidden, paper.heads.projector_out) == (0.996, 4096, 256)
    assert (paper.optim.base_lr, paper.optim.weight_decay, paper.optim.name) == (0.2, 1.5e-6, "lars")


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_inherit_and_change_only_their_keys(name):
    raw = load_yaml(CONFIGS / f"{name}.yaml")
    text = (CONFIGS / f"{name}.yaml").read_text()
    assert "_base_: byol.yaml" in text
    base = _flat(to_dict(load_pretrain_config(CONFIGS / "byol.yaml", [])))
    cfg = load_pretrain_config(CONFIGS / f"{name}.yaml", [])
    changed = {k for k, v in _flat(to_dict(cfg)).items() if base[k] != v}
    if name == "tau-0.9":  # byol.yaml is itself τ 0.9, constant: the ablation's τ = 0.9 point is the default row
        assert not changed
        return
    assert changed and changed <= set(_flat(raw))


def test_variant_semantics():
    get = lambda n: load_pretrain_config(CONFIGS / f"{n}.yaml", [])  # noqa: E731
    assert get("no-predictor").byol.predictor is False
    for name, tau in [("tau-0", 0.0), ("tau-0.9", 0.9), ("tau-0.99", 0.99), ("tau-0.999", 0.999), ("tau-1", 1.0)]:
        c = get(name)
        assert (c.byol.tau_base, c.byol.tau_schedule) == (tau, "constant")
    c = get("no-ema-predictor-lr-x10")
    assert (c.byol.tau_base, c.byol.tau_schedule, c.byol.predictor_lr_mult) == (0.0, "constant", 10.0)
    # the default trains its predictor 10x faster (measured on shapes); the paper's 1x is its own row
    assert get("byol").byol.predictor_lr_mult == 10.0 and get("predictor-lr-x1").byol.predictor_lr_mult == 1.0
    c = get("tau-0-predictor-lr-x1")
    assert (c.byol.tau_base, c.byol.tau_schedule, c.byol.predictor_lr_mult) == (0.0, "constant", 1.0)


def test_overrides_and_errors_name_the_key(tmp_path):
    cfg = load_pretrain_config(CONFIGS / "byol.yaml", ["optim.base_lr=0.5", "augment.view2.solarize_p=0.4"])
    assert cfg.optim.base_lr == 0.5 and cfg.augment.view2.solarize_p == 0.4
    assert cfg.augment.view2.blur_p == 0.1  # view 2's own default survives a partial override
    with pytest.raises(ConfigError, match="optim.bse_lr"):
        load_pretrain_config(CONFIGS / "byol.yaml", ["optim.bse_lr=0.5"])
    with pytest.raises(ConfigError, match="run.epochs"):
        load_pretrain_config(CONFIGS / "byol.yaml", ["run.epochs=many"])
    with pytest.raises(ConfigError, match="optim.name"):
        load_pretrain_config(None, ["optim.name=adam"])
    with pytest.raises(ConfigError, match="solarize_p"):
        load_pretrain_config(None, ["augment.view1.solarize_p=1.5"])
    with pytest.raises(ConfigError, match="arch"):
        load_pretrain_config(None, ["backbone.arch=vgg11"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("_base_: " + str(CONFIGS / "byol.yaml") + "\nbyol:\n  tau: 0.5\n")
    with pytest.raises(ConfigError, match=r"byol\.tau") as err:
        load_pretrain_config(bad, [])
    assert "bad.yaml" in str(err.value)


def test_derived_values_stay_out_of_the_config():
    cfg = load_pretrain_config(CONFIGS / "byol.yaml", ["optim.batch_size=64", "optim.base_lr=0.4"])
    d = derive(cfg, num_images=1000, world_size=2)
    assert d.lr == pytest.approx(0.4 * 64 / 256) and d.per_rank_batch == 32
    assert d.steps_per_epoch == 1000 // 64 and d.total_steps == d.steps_per_epoch * cfg.run.epochs
    assert cfg.optim.base_lr == 0.4
    with pytest.raises(ConfigError, match="divisible"):
        derive(cfg, 1000, world_size=3)


def test_background_swap_needs_digits_m():
    cfg = load_pretrain_config(None, ["augment.view1.background_swap_p=0.5"])
    assert cfg.augment.view1.background_swap_p == 0.5 and cfg.augment.view2.background_swap_p == 0.0
    with pytest.raises(ConfigError, match=r"augment.view2.background_swap_p=1.0 needs data.dataset=digits-m"):
        load_pretrain_config(None, ["augment.view2.background_swap_p=1.0", "data.dataset=digits"])
    with pytest.raises(ConfigError, match="background_swap_p"):
        load_pretrain_config(None, ["augment.view1.background_swap_p=1.5"])


def test_a_bare_off_in_yaml_is_the_off_choice_not_a_bool(tmp_path):
    """YAML 1.1 reads `off` as False: `run.amp: off` (file or override) must select "off", not be refused."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("_base_: " + str(CONFIGS / "byol.yaml") + "\nrun: {amp: off}\n")
    assert load_pretrain_config(cfg).run.amp == "off"
    assert load_pretrain_config(CONFIGS / "byol.yaml", ["run.amp=off"]).run.amp == "off"
    with pytest.raises(ConfigError, match="run.amp"):  # a bool with no matching choice is still an error
        load_pretrain_config(CONFIGS / "byol.yaml", ["run.amp=true"])
