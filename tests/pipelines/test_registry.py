"""Manifests: validation, status (ready/downloadable/missing), paths confined to allowed folders."""

from pathlib import Path

import pytest

from pipelines.registry import MODELS_DIR, ModelError, Registry, parse_manifest


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(body)
    return path


BASE = 'name = "{name}"\ntitle = "T"\nbackend = "sd"\n[components]\n{components}\n'


def test_unknown_key_and_bad_backend_are_errors(tmp_path):
    write(tmp_path, "a", 'colour = "red"\n' + BASE.format(name="a", components='base = "x/y"'))
    with pytest.raises(ModelError, match="unknown keys"):
        parse_manifest(tmp_path / "a.toml")
    write(tmp_path, "b", 'name = "b"\ntitle = "T"\nbackend = "dalle"\n[components]\n')
    with pytest.raises(ModelError, match="backend"):
        parse_manifest(tmp_path / "b.toml")


def test_local_component_outside_allowed_folders_is_refused(tmp_path):
    inside = tmp_path / "models"
    inside.mkdir()
    write(inside, "escape", BASE.format(name="escape", components='base = "../../etc"'))
    registry = Registry(inside, allowed_roots=(inside,))
    assert "escape" not in registry.specs()
    assert "outside the allowed folders" in registry.errors()["escape.toml"]


def test_missing_local_weights_and_offline_hub_are_missing_with_reasons(tmp_path, monkeypatch):
    write(tmp_path, "local", BASE.format(name="local", components='base = "./nowhere"'))
    write(tmp_path, "hub", BASE.format(name="hub", components='base = "nobody/not-cached-model"'))
    registry = Registry(tmp_path, allowed_roots=(tmp_path,))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = {s.spec.name: s for s in registry.list()}
    assert status["local"].state == "missing" and "nowhere" in status["local"].reason
    assert status["hub"].state == "missing" and "HF_HUB_OFFLINE" in status["hub"].reason
    with pytest.raises(ModelError, match="cannot be loaded"):
        registry.load("hub", "cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert registry.status(registry.get("hub")).state == "downloadable"


def test_a_student_without_the_base_its_backend_draws_with_is_never_ready(tmp_path):
    """A pipeline check's Sana student names its transformer but no 'base' (text encoder, VAE): its engine refuses
    it, so the Models tab must not call it ready."""
    (tmp_path / "student").mkdir()
    write(
        tmp_path,
        "student",
        'name = "student"\ntitle = "T"\nbackend = "sana"\n[components]\ntransformer = "./student"\n',
    )
    write(tmp_path, "whole", BASE.format(name="whole", components='base = "./student"'))
    registry = Registry(tmp_path, allowed_roots=(tmp_path,))
    status = registry.status(registry.get("student"))
    assert status.state == "missing" and "cannot draw: the manifest names no 'base' component" in status.reason
    assert registry.status(registry.get("whole")).state == "ready"


def test_unknown_model_names_the_known_ones(tmp_path):
    write(tmp_path, "only", BASE.format(name="only", components='base = "a/b"'))
    with pytest.raises(ModelError, match="only"):
        Registry(tmp_path).get("../../secret")


def test_shipped_manifests_all_parse():
    registry = Registry(MODELS_DIR)
    specs = registry.specs()
    assert registry.errors() == {}
    assert specs, "the repository ships manifests"
    for spec in specs.values():
        assert spec.allowed_steps and spec.steps in spec.allowed_steps
