"""Job config: presets parse, overrides are typed, and every bad key or value is named before a job starts."""

from pathlib import Path

import pytest

from distillation.config import (
    ConfigError,
    JobConfig,
    changed_keys,
    config_from_dict,
    config_to_dict,
    load_config,
    with_defaults,
)

PRESETS = Path(__file__).resolve().parents[2] / "distillation" / "presets"


@pytest.mark.parametrize("preset", sorted(p.name for p in PRESETS.glob("*.toml")))
def test_every_preset_loads_and_round_trips(preset, tmp_path):
    # prepared data is not in the repository (python -m distillation.data prepare): point the presets that read it at
    # an empty folder, the rest of the preset is checked as written
    text = (PRESETS / preset).read_text()
    data = ["--data.path=" + str(tmp_path)] if "sketch_pairs" in text or "image_folder" in text else []
    cfg = load_config(PRESETS / preset, data)
    assert isinstance(cfg, JobConfig)
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_overrides_are_typed_and_dotted():
    cfg = load_config(
        PRESETS / "tiny_scm_ladd.toml",
        [
            "--max_steps=2",
            "--optim.lr=1",  # an int where a float is declared
            "--data.guidance=[3, 4.5]",
            "--method.tangent_warmup=7",
            "--method.jvp_mode=fd",  # a bare word is a string
            "--optim.role_lr={heads = 0.5}",
            "--name=other",
        ],
    )
    assert cfg.max_steps == 2 and cfg.name == "other"
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.data.guidance == (3.0, 4.5)
    assert cfg.method.options["tangent_warmup"] == 7 and cfg.method.options["jvp_mode"] == "fd"
    assert cfg.optim.role_lr == {"heads": 0.5}


@pytest.mark.parametrize(
    "override, message",
    [
        ("--max_stepz=3", "unknown key 'max_stepz'"),
        ("--optim.lrr=0.1", "unknown key 'optim.lrr'"),
        ("--teacher.kind.x=1", "teacher.kind is not a section"),
        ("--method.tangent_warmupp=3", "unknown key 'method.tangent_warmupp'"),
        ("--max_steps=many", "max_steps: expected int, got str 'many'"),
        ("--max_steps=2.5", "max_steps: expected int, got float"),
        ("--student.gradient_checkpointing=1", "student.gradient_checkpointing: expected bool"),
        ("--optim.betas=[0.9]", "optim.betas: expected 2 values"),
        ("--data.guidance=4.5", "data.guidance: expected a list"),
        ("--method.jvp_mode=backward", "method.jvp_mode: expected one of ['forward', 'fd']"),
        ("--method.name=scn", "method.name: unknown method 'scn'"),
        ("--mixed_precision=fp8", "mixed_precision: expected one of"),
        ("--batch_size=1", "batch_size: scm_ladd needs at least 2 samples per process, got 1"),
        ("--teacher.random=", "teacher.path: give a weights folder"),
        ("--teacher.dtype=bfloat16", "teacher.dtype: bfloat16 frozen weights need mixed_precision"),
        ("--max_steps", "write it as --key=value"),
        ("--data.kind=photos", "data.kind: expected one of ['synthetic', 'sketch_pairs', 'image_folder']"),
        (
            "--data.sketch=sobel",
            "data.sketch: expected one of ['canny', 'lineart', 'hed', 'aux_hed', 'aux_pidinet', 'aux_lineart']",
        ),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(PRESETS / "tiny_scm_ladd.toml", [override])
    assert message in str(error.value)


def test_missing_paths_are_refused_before_the_job(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"teacher.path: .*nowhere does not exist"):
        load_config(PRESETS / "tiny_scm_ladd.toml", ["--teacher.random=", f"--teacher.path={missing}"])
    with pytest.raises(ConfigError, match="teacher.controlnet_path: needed"):
        load_config(PRESETS / "tiny_scm_ladd.toml", ["--teacher.random=", f"--teacher.path={tmp_path}"])
    with pytest.raises(ConfigError, match=r"data.path: .*nowhere does not exist"):
        load_config(PRESETS / "tiny_scm_ladd.toml", ["--data.kind=sketch_pairs", f"--data.path={missing}"])
    with pytest.raises(ConfigError, match=r"data.path: .*nowhere does not exist"):
        load_config(PRESETS / "tiny_scm_ladd.toml", ["--data.kind=image_folder", f"--data.path={missing}"])
    with pytest.raises(ConfigError, match=r"data.path: '' does not exist"):
        load_config(PRESETS / "tiny_scm_ladd.toml", ["--data.kind=image_folder"])


def test_image_folder_needs_a_folder_and_hed_its_weights(tmp_path, monkeypatch):
    from pipelines.hed import HED

    folder = ["--data.kind=image_folder", f"--data.path={tmp_path}"]
    cfg = load_config(PRESETS / "tiny_scm_ladd.toml", [*folder, "--data.sketch=lineart"])
    assert (cfg.data.kind, cfg.data.path, cfg.data.sketch, cfg.data.cache) == (
        "image_folder",
        str(tmp_path),
        "lineart",
        "",
    )
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"data.path: .*a.png is not a folder \(give the folder that holds"):
        load_config(PRESETS / "tiny_scm_ladd.toml", ["--data.kind=image_folder", f"--data.path={tmp_path / 'a.png'}"])
    monkeypatch.setattr(HED, "available", staticmethod(lambda: False))
    with pytest.raises(ConfigError, match=r"data.sketch: 'hed' needs the HED weights.*use data.sketch = 'canny'"):
        load_config(PRESETS / "tiny_scm_ladd.toml", [*folder, "--data.sketch=hed"])
    assert load_config(PRESETS / "tiny_scm_ladd.toml", ["--data.sketch=hed"]).data.kind == "synthetic"  # unused


def test_preset_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read preset"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text('[teacher]\nkind = "sana"\nrandom = "tiny"\ncontrolnett = true\n')
    with pytest.raises(ConfigError, match=r"unknown key 'teacher.controlnett' \(\[teacher\] knows: .*controlnet,"):
        load_config(typo)
    section = tmp_path / "section.toml"
    section.write_text('teacher = "sana"\n')
    with pytest.raises(ConfigError, match="teacher: expected a table"):
        load_config(section)


def test_changed_keys_lists_dotted_differences():
    a = config_to_dict(load_config(PRESETS / "tiny_scm_ladd.toml"))
    b = config_to_dict(load_config(PRESETS / "tiny_scm_ladd.toml", ["--max_steps=3", "--method.tangent_warmup=1"]))
    assert changed_keys(a, b) == ["max_steps", "method.tangent_warmup"]


def test_a_checkpoint_from_before_a_new_key_still_matches_when_the_key_keeps_its_default():
    new = config_to_dict(load_config(PRESETS / "tiny_scm_ladd.toml"))
    old = {**new, "data": {k: v for k, v in new["data"].items() if k not in ("sketch", "cache")}}  # an older module
    assert changed_keys(old, new) == ["data.cache", "data.sketch"]
    assert changed_keys(with_defaults(old), new) == []
    changed = config_to_dict(load_config(PRESETS / "tiny_scm_ladd.toml", ["--data.sketch=lineart"]))
    assert changed_keys(with_defaults(old), changed) == ["data.sketch"]
    assert with_defaults(new) == new
