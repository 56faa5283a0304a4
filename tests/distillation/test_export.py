"""Export: EMA student -> weights + manifest; merged LoRA == adapter, saved weights == student, registry lists it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import SanaTransformer2DModel

from distillation.config import load_config
from distillation.export import ExportError, export_student, merged_student, provenance
from distillation.teachers.registered import REGISTERED, register_teacher
from distillation.trainer import Trainer
from pipelines.parameterization import FlowAsTrigFlow
from pipelines.registry import Registry, parse_manifest
from pipelines.sana.flow import SanaFlow
from pipelines.sana.load import load_controlnet

PRESETS = Path(__file__).resolve().parents[2] / "distillation" / "presets"


def trained(tmp_path: Path, preset: str, *overrides: str) -> Trainer:
    """A trainer after two steps (EMA != weights) of a tiny preset."""
    cfg = load_config(PRESETS / preset, ["--preview.every=0", "--export.enabled=false", *overrides])
    trainer = Trainer(cfg, tmp_path / "run", progress="json")
    trainer.setup()
    trainer.train_step()
    trainer.train_step()
    return trainer


def inputs(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor, dict]:
    items = [trainer.dataset[i] for i in range(2)]
    cond = {k: torch.stack([item[k] for item in items]) for k in items[0] if k != "x0"}
    return torch.randn(2, *trainer.teacher.sample_shape), torch.tensor([0.5, 1.5]), cond


def test_merged_lora_student_equals_the_adapter_and_round_trips_through_diffusers(tmp_path):
    trainer = trained(tmp_path, "tiny_dmd2.toml")  # student and fake: LoRA adapters on the shared base
    role = trainer.roles["student"]
    x, t, cond = inputs(trainer)
    current = {name: p.detach() for name, p in role.params.items()}
    with torch.no_grad():
        adapter_out = role.module(x, t, cond)
        torch.testing.assert_close(merged_student(role.module, current)(x, t, cond), adapter_out, rtol=1e-5, atol=1e-5)
        ema_student = merged_student(role.module, trainer.ema)
        assert not torch.allclose(ema_student(x, t, cond), adapter_out)  # the EMA lags the weights
        expected = ema_student(x, t, cond)
    assert not any("lora" in name for name, _ in ema_student.named_parameters())

    result = export_student(teacher=trainer.teacher, student=ema_student, models_dir=tmp_path / "models", name="s1")
    assert result.manifest == tmp_path / "models" / "s1.toml" and not list((tmp_path / "models").glob(".tmp-*"))
    # a Sana student with no 'base' (text encoder, VAE) cannot be drawn with: exported, but never "ready"
    assert result.registry.startswith("not usable: cannot draw: the manifest names no 'base' component")
    spec = parse_manifest(result.manifest)
    assert Registry(tmp_path / "models").status(spec).state == "missing"
    flow = SanaFlow(  # as the engine loads and runs it
        SanaTransformer2DModel.from_pretrained(spec.component_path("transformer")),
        load_controlnet(spec.component_path("controlnet"), torch.float32),
        dense_time=True,
    )
    with torch.no_grad():
        torch.testing.assert_close(FlowAsTrigFlow(flow)(x, t, cond), expected, rtol=1e-5, atol=1e-5)
    assert spec.steps == 1 and spec.guidance == 0.0 and spec.resolution == 512  # DC-AE f32 x the tiny 16-wide latent


def test_tiny_pixel_student_is_listed_and_loads_as_an_engine(tmp_path):
    """The project's small model (pipelines/tiny/) as teacher: its student is a backend the registry loads."""
    overrides = [
        "--teacher.kind=sketch_tiny",
        "--teacher.controlnet=false",
        "--method.name=scm",
        "--optim.role_lr={}",
        "--data.guidance=[2.0]",
    ]
    trainer = trained(tmp_path, "tiny_scm_ladd.toml", *overrides)
    student = merged_student(trainer.roles["student"].module, trainer.ema)
    result = export_student(
        teacher=trainer.teacher, student=student, models_dir=tmp_path / "models", name="tiny-student", steps=2
    )
    assert result.registry == "listed"
    models = Registry(tmp_path / "models")
    assert [(s.spec.name, s.state) for s in models.list()] == [("tiny-student", "ready")]
    engine = models.load("tiny-student", "cpu")
    assert engine.model.config.kind == "trigflow"
    with torch.no_grad():  # save_tiny stores float16: compare with the float16-rounded EMA student
        for p in student.parameters():
            p.copy_(p.half().float())
        x, t, cond = inputs(trainer)
        torch.testing.assert_close(FlowAsTrigFlow(engine.model)(x, t, cond), student(x, t, cond), rtol=0, atol=1e-5)
    prompt = engine.encode_prompt("")
    control = engine.encode_control(np.zeros((16, 16, 3), np.uint8), (16, 16))
    frame = engine.generate(prompt, control, seed=0, steps=2, strength=1.0, resolution=(16, 16))
    assert frame.image.size == (16, 16)


def test_export_refuses_bad_names(tmp_path):
    trainer = trained(tmp_path, "tiny_scm_ladd.toml")
    with pytest.raises(ExportError, match="export name '../x'"):
        export_student(teacher=trainer.teacher, student=trainer.teacher.model, models_dir=tmp_path, name="../x")


class ConvFlow(torch.nn.Module):
    """A registered stand-in teacher: v(x_s, s, cond) from one conv over [x_s, s, control]."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3 + 1 + 1, 3, 3, padding=1)

    def forward(self, x_s, s, cond):
        time = s[:, None, None, None].expand(-1, 1, *x_s.shape[2:])
        return self.conv(torch.cat([x_s, time, cond["control"]], dim=1))


def test_a_registered_module_teacher_trains_and_an_unknown_backend_is_reported(tmp_path):
    register_teacher(
        "conv_test",
        lambda path: ConvFlow(),
        sample_shape=(3, 8, 8),
        cond_shapes={"control": (1, 8, 8)},
        backend="nope",
    )
    try:
        cfg = load_config(
            PRESETS / "tiny_dmd2.toml",
            ["--teacher.kind=conv_test", "--teacher.controlnet=false", "--max_steps=1", "--preview.every=1"]
            + ["--data.guidance=[]", f"--export.models_dir={tmp_path / 'models'}", "--student.lora_targets=['conv']"],
        )
        assert Trainer(cfg, tmp_path / "run", progress="json").run() == 0
    finally:
        REGISTERED.pop("conv_test")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "done" and Path(status["manifest"]).is_file()
    assert (tmp_path / "models" / "tiny-dmd2" / "model.safetensors").is_file()
    models = Registry(tmp_path / "models")
    assert models.list() == [] and "backend must be one of" in models.errors()["tiny-dmd2.toml"]
    assert len(list((tmp_path / "run" / "previews").glob("*.png"))) == 2


def test_fine_tune_manifest_names_the_teachers_weights_the_starting_weights_and_the_folder(tmp_path):
    """The fine-tune preset on a 16 px stand-in: the student starts from `student.init` (learning rate 0: the export
    is exactly those weights, not the teacher's), and the manifest's licence and source name the teacher's weights
    (with their licence), the starting weights and the person's folder; a random teacher says so instead."""
    from distillation.jobs import FINETUNE_PRESET
    from pipelines.tiny import load_tiny, save_tiny
    from tests.distillation.test_data_folders import image_folder
    from tests.distillation.test_jobs_store import tiny_net

    teacher, start = tmp_path / "teacher", tmp_path / "start"
    save_tiny(tiny_net(seed=0), teacher)
    save_tiny(tiny_net(seed=1), start, extra={"kind": "trigflow"})
    folder = image_folder(tmp_path / "my pictures")
    paths = {
        "teacher.path": teacher,
        "student.init": start,
        "data.path": folder,
        "data.cache": tmp_path / "cache",
        "export.models_dir": tmp_path / "models",
    }
    overrides = [f"--{key}={json.dumps(str(value))}" for key, value in paths.items()]
    overrides += [
        "--export.name=mine",
        "--max_steps=1",
        "--batch_size=2",
        "--optim.lr=0",
        "--optim.role_lr={}",
        "--preview.every=0",
    ]
    assert Trainer(load_config(FINETUNE_PRESET, overrides), tmp_path / "run", progress="json").run() == 0
    manifest = parse_manifest(tmp_path / "models" / "mine.toml")
    exported = load_tiny(tmp_path / "models" / "mine").state_dict()
    for name, value in load_tiny(start).state_dict().items():
        torch.testing.assert_close(exported[name], value, rtol=0, atol=0)
    for text in (manifest.licence, manifest.source):
        assert str(teacher) in text and str(start) in text and str(folder) in text
    assert "per-pair licences in pairs.jsonl" in manifest.licence and "random" not in manifest.licence
    assert manifest.source.startswith("fine-tuned by distillation.train (paired_ladd, 1 steps)")

    source, licence = provenance(load_config(PRESETS / "tiny_scm_ladd.toml"))
    assert licence == "no weights (random initialisation)" and "random weights (tiny, seed 0)" in source
    pairs = [f"--data.path={json.dumps(str(tmp_path))}"]  # pre-trained from scratch on prepared pairs
    _, licence = provenance(load_config(PRESETS / "sketch_tiny_teacher.toml", pairs))
    assert "trained from random initialisation on prepared pairs" in licence and "pairs.jsonl" in licence
