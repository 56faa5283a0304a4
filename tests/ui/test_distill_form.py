"""The Distill-a-teacher form: its choices become overrides the trainer accepts, registry models are offered as
teachers (or said why not), and the default preset is one that runs here."""

import shutil

import pytest

from distillation.config import load_config
from distillation.jobs import JobError, load_preset
from pipelines.registry import MODELS_DIR, Registry
from pipelines.tiny import save_tiny
from tests.distillation.test_jobs_store import make_teacher_models, tiny_net
from ui import distill_form
from ui.distill_form import default_preset, preset_choices, request, teacher_models

STUDENT_MANIFEST = """name = "tiny-student"
title = "Tiny random student"
backend = "tiny"
resolution = 16
steps = 1
allowed_steps = [1, 2]
dtype = "float32"

[components]
weights = "./tiny-student"
"""


@pytest.fixture
def models(tmp_path) -> Registry:
    return Registry(make_teacher_models(tmp_path / "models"))


def form(**changes):
    """The tab's inputs in order (preset, method, teacher, model, path, family, controlnet, data, data path, augment,
    steps, lr, batch, LoRA rank, image folder, sketch extractor) as gr.Number gives them (floats)."""
    values = {
        "preset": "tiny_scm_ladd",
        "method": "scm_ladd",
        "teacher": "preset",
        "teacher_model": None,
        "teacher_path": "",
        "teacher_kind": "sana",
        "controlnet_path": "",
        "data": "synthetic",
        "data_path": "data/sketch_tiny/128",
        "augment": False,
        "steps": 20.0,
        "lr": 1e-4,
        "batch": 2.0,
        "lora_rank": 0.0,
        "folder_path": "",
        "sketch": "canny",
    }
    values.update(changes)
    return list(values.values())


def test_distill_tab_form_becomes_overrides_that_the_trainer_accepts(models):
    path, overrides, teacher = request(
        models, *form(method="scm", teacher="model", teacher_model="tiny-teacher", steps=5.0, lr=1e-3, lora_rank=0.0)
    )
    cfg = load_config(path, overrides)
    assert teacher == "tiny-teacher" and cfg.teacher.kind == "sketch_tiny" and not cfg.teacher.random
    assert cfg.teacher.path == str(models.models_dir / "tiny-teacher") and cfg.teacher.controlnet is False
    assert cfg.method.name == "scm" and cfg.optim.role_lr == {} and cfg.data.kind == "synthetic"
    assert (cfg.max_steps, cfg.optim.lr, cfg.batch_size, cfg.student.lora_rank) == (5, 1e-3, 2, 0)

    _, overrides, _ = request(models, *form(method="dmd2", lora_rank=4.0))  # the preset's sCM options are dropped
    cfg = load_config(path, overrides)
    assert cfg.method.name == "dmd2" and "tangent_warmup" not in cfg.method.options and cfg.student.lora_rank == 4
    _, overrides, _ = request(models, *form(method="twinflow"))
    with pytest.raises(JobError, match="batch_size: twinflow needs at least 4 samples"):
        load_preset(path, overrides)

    _, overrides, _ = request(
        models, *form(teacher="hub", teacher_path="someone/sana-teacher", controlnet_path="someone/sana-controlnet")
    )
    cfg = load_config(path, overrides)
    assert (cfg.teacher.path, cfg.teacher.controlnet_path, cfg.teacher.controlnet) == (
        "someone/sana-teacher",
        "someone/sana-controlnet",
        True,
    )
    with pytest.raises(JobError, match="teacher hub id 'not an id'"):
        request(models, *form(teacher="hub", teacher_path="not an id"))
    with pytest.raises(JobError, match="data 'my_photos': synthetic, sketch_pairs or image_folder"):
        request(models, *form(data="my_photos"))


def test_distill_tab_takes_a_folder_of_images_with_a_sketch_extractor(models, tmp_path, monkeypatch):
    from distillation import data as data_module
    from tests.distillation.test_data_folders import image_folder

    folder = image_folder(tmp_path / "my photos")
    choice = form(
        teacher="model",
        teacher_model="tiny-teacher",
        method="scm",
        data="image_folder",
        folder_path=f"  {folder}  ",
        sketch="lineart",
        augment=True,
    )
    path, overrides, _ = request(models, *choice)
    cfg = load_config(path, overrides)
    assert (cfg.data.kind, cfg.data.path, cfg.data.sketch, cfg.data.augment) == (
        "image_folder",
        str(folder),
        "lineart",
        True,
    )
    assert not any("sketch_tiny/128" in item for item in overrides)  # the pairs textbox is not the folder
    with pytest.raises(JobError, match="give the folder of your images"):
        request(models, *form(data="image_folder", folder_path=""))
    _, overrides, _ = request(models, *form(data="image_folder", folder_path=str(tmp_path / "nowhere")))
    with pytest.raises(JobError, match="nowhere does not exist"):
        load_preset(path, overrides)
    monkeypatch.setattr(data_module.HED, "available", staticmethod(lambda: False))
    _, overrides, _ = request(models, *form(data="image_folder", folder_path=str(folder), sketch="hed"))
    with pytest.raises(JobError, match="'hed' needs the HED weights"):
        load_preset(path, overrides)


def test_distill_tab_offers_registry_teachers_and_says_why_others_cannot_teach(tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(MODELS_DIR, folder, ignore=shutil.ignore_patterns("*.png"))
    make_teacher_models(folder)
    save_tiny(tiny_net(seed=1), folder / "tiny-student", extra={"kind": "trigflow"})
    (folder / "tiny-student.toml").write_text(STUDENT_MANIFEST)
    usable, note = teacher_models(Registry(folder))
    assert {"tiny-teacher", "tiny-random-sd", "sd-turbo-scribble"} <= set(usable)
    assert not {"tiny-student", "sana-sprint-0.6b", "sdxl-turbo-scribble"} & set(usable)
    assert "tiny-student is a distilled student" in note and "sana-sprint-0.6b: its teacher is an NVlabs" in note
    assert "sdxl-turbo-scribble: the trainer has no teacher family for backend 'sdxl'" in note


def test_distill_tab_defaults_work_here_and_pipeline_checks_come_last_labelled(monkeypatch):
    choices = preset_choices()
    names = [name for _, name in choices]
    assert "finetune_sketch_tiny" not in names  # the other path's
    checks = [label for label, name in choices if name.startswith("tiny_")]
    assert checks and names[-len(checks) :] == ["tiny_dmd2", "tiny_scm_ladd"]
    assert all("pipeline check: random weights, its student cannot draw" in label for label in checks)

    def no_pairs(cfg):  # a fresh clone has no prepared pairs (a developer's data/ link may have them)
        if cfg.data.kind == "sketch_pairs":
            raise JobError("no prepared pairs")

    monkeypatch.setattr(distill_form, "check_data", no_pairs)
    assert default_preset() == "sketch_tiny_scm"  # no prepared pairs: the runnable recipe
    monkeypatch.setattr(distill_form, "load_preset", lambda path: path)  # as if data/sketch_tiny/128 were prepared
    monkeypatch.setattr(distill_form, "check_data", lambda cfg: None)
    assert default_preset() == "sketch_tiny_scm_ladd"
