"""The trainer on tiny random diffusers Sana (+ Sana ControlNet): one step per method is finite and moves only the
declared trainable parameters; non-finite updates are skipped within a budget; SIGTERM checkpoints; progress lines."""

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState

from distillation.batching import BatchSampler, make_batch
from distillation.config import ConfigError, load_config
from distillation.methods.base import RoleSpec, teacher_F
from distillation.teachers import build_teacher
from distillation.teachers.unet import VPAsTrigFlow
from distillation.trainer import Trainer
from pipelines.parameterization import SIGMA_D
from pipelines.text import PROMPT_DIM
from tests.fakes import write_sketch_pairs

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ROOT / "distillation" / "presets"
QUIET = ["--preview.every=0", "--export.enabled=false"]


def set_up(tmp_path: Path, preset: str, *overrides: str) -> Trainer:
    trainer = Trainer(load_config(PRESETS / preset, [*QUIET, *overrides]), tmp_path, progress="json")
    trainer.setup()
    return trainer


def all_parameters(trainer: Trainer) -> dict[int, torch.nn.Parameter]:
    """Every parameter any role can reach (the shared teacher base once), by identity."""
    return {id(p): p for role in trainer.roles.values() for p in role.module.parameters()}


@pytest.mark.parametrize(
    "preset, overrides, updated",
    [
        ("tiny_scm_ladd.toml", [], {"student", "logvar", "heads"}),
        ("tiny_scm_ladd.toml", ["--student.lora_rank=4"], {"student", "logvar", "heads"}),
        ("tiny_dmd2.toml", [], {"student", "fake"}),
        ("tiny_dmd2.toml", ["--student.lora_rank=0"], {"student", "fake"}),
    ],
    ids=["scm_ladd", "scm_ladd-lora", "dmd2-lora", "dmd2"],
)
def test_one_step_is_finite_and_moves_only_trainable_parameters(tmp_path, preset, overrides, updated):
    trainer = set_up(tmp_path, preset, *overrides)
    assert trainer.teacher.model.flow_model.controlnet is not None
    params = all_parameters(trainer)
    before = {key: p.detach().clone() for key, p in params.items()}
    logs = trainer.train_step()
    assert logs and all(math.isfinite(v) for v in logs.values()), logs
    assert not any(k.endswith("/skipped") for k in logs)
    changed = {key for key, p in params.items() if not torch.equal(before[key], p)}
    declared = {id(p): role for role, r in trainer.roles.items() for p in r.params.values()}
    assert changed <= declared.keys()  # the teacher (and a LoRA base) did not move
    assert {declared[key] for key in changed} == updated  # every role of the step's plan moved
    frozen = [p for p in trainer.teacher.model.parameters() if id(p) not in declared]
    assert frozen and not any(p.requires_grad for p in frozen)


def test_lora_teacher_is_the_base_with_adapters_off(tmp_path):
    """With LoRA the teacher is the untouched base: its output equals a fresh teacher's, the student's does not
    once its adapter has trained (LoRA B starts at zero, so before a step they agree)."""
    trainer = set_up(tmp_path, "tiny_dmd2.toml")
    batch = make_batch([trainer.dataset[i] for i in range(2)], guidance=(4.5,), uncond_keys=("text",), device="cpu")
    x, t = torch.randn(2, *trainer.teacher.sample_shape), torch.tensor([0.4, 1.2])
    fresh = build_teacher(kind="sana", random="tiny", controlnet=True).model
    with torch.no_grad():
        assert torch.equal(trainer.roles["student"].module(x, t, batch["cond"]), fresh(x, t, batch["cond"]))
    trainer.train_step()
    with torch.no_grad():
        assert torch.equal(teacher_F(trainer.roles["teacher"].module, x, t, batch), teacher_F(fresh, x, t, batch))
        assert not torch.allclose(trainer.roles["student"].module(x, t, batch["cond"]), fresh(x, t, batch["cond"]))


def test_gradient_checkpointing_gives_the_same_step(tmp_path):
    plain = set_up(tmp_path / "a", "tiny_scm_ladd.toml")
    logs = plain.train_step()  # set-up seeds torch's global RNG: each trainer steps right after its own set-up
    checkpointed = set_up(tmp_path / "b", "tiny_scm_ladd.toml", "--student.gradient_checkpointing=true")
    assert checkpointed.roles["student"].module.flow_model.transformer.gradient_checkpointing
    assert checkpointed.train_step() == logs
    for name, p in plain.roles["student"].params.items():
        torch.testing.assert_close(p, checkpointed.roles["student"].params[name], rtol=0, atol=1e-6)


def test_bf16_autocast_step_is_finite(tmp_path):
    AcceleratorState._reset_state(True)  # the process's accelerate state is set once per precision
    try:
        trainer = set_up(tmp_path, "tiny_scm_ladd.toml", "--mixed_precision=bf16")
        logs = trainer.train_step()
        assert all(math.isfinite(v) for v in logs.values()) and "student/skipped" not in logs
    finally:
        AcceleratorState._reset_state(True)


class NaNLoss(Trainer):
    """The student's loss turns NaN (a real graph, so the gradients are NaN too)."""

    def build_method(self):
        method = super().build_method()
        loss = method.loss

        def nan_loss(role, batch, step):
            out = loss(role, batch, step)
            return {**out, "loss": out["loss"] * float("nan")} if role == "student" else out

        method.loss = nan_loss
        return method


def test_non_finite_updates_are_skipped_then_the_job_fails(tmp_path):
    cfg = load_config(PRESETS / "tiny_scm_ladd.toml", [*QUIET, "--max_steps=5", "--nan_budget=2"])
    trainer = NaNLoss(cfg, tmp_path, progress="json")
    trainer.setup()
    student = {n: p.detach().clone() for n, p in trainer.roles["student"].params.items()}
    logs = trainer.train_step()
    assert logs["student/skipped"] == 1 and trainer.skipped == 1 and "heads/skipped" not in logs
    assert all(torch.equal(p, student[n]) for n, p in trainer.roles["student"].params.items())
    assert all(torch.equal(v, student[n]) for n, v in trainer.ema.items())
    assert NaNLoss(cfg, tmp_path / "job", progress="json").run() == 1
    status = json.loads((tmp_path / "job" / "status.json").read_text())
    assert status["state"] == "failed" and status["step"] == 2
    assert "3 non-finite updates exceed nan_budget = 2" in status["reason"]


class StopAfterOne(Trainer):
    def train_step(self):
        logs = super().train_step()
        os.kill(os.getpid(), signal.SIGTERM)
        return logs


def test_sigterm_checkpoints_and_stops(tmp_path, capsys):
    cfg = load_config(PRESETS / "tiny_scm_ladd.toml", [*QUIET, "--max_steps=5"])
    handler = signal.getsignal(signal.SIGTERM)
    assert StopAfterOne(cfg, tmp_path, progress="json").run() == 143
    assert signal.getsignal(signal.SIGTERM) is handler  # the job's handler is gone again
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "stopped" and status["step"] == 1
    assert (tmp_path / "checkpoints" / "step_00000001" / "state.json").is_file()
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["start", "progress", "checkpoint", "stopped"]
    progress = events[1]
    assert {"step", "total", "it_s", "eta_s", "student/loss", "heads/loss"} <= progress.keys()
    assert progress["step"] == 1 and progress["total"] == 5


def test_bad_input_is_refused_before_the_job_starts(tmp_path, capsys):
    with pytest.raises(ConfigError, match="batch_size: scm_ladd needs at least 2 samples per process, got 1"):
        load_config(PRESETS / "tiny_scm_ladd.toml", ["--batch_size=1"])
    cfg = load_config(
        PRESETS / "tiny_scm_ladd.toml", [*QUIET, "--student.lora_rank=2", "--student.lora_targets=['nope']"]
    )
    assert Trainer(cfg, tmp_path, progress="json").run() == 2
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "student.lora_targets ['nope']" in status["reason"]
    assert not (tmp_path / "checkpoints").exists()
    cfg = load_config(PRESETS / "tiny_scm_ladd.toml", [*QUIET, "--optim.role_lr={critic = 1.0}"])
    assert Trainer(cfg, tmp_path / "b", progress="json").run() == 2
    assert "optim.role_lr: no role 'critic'" in capsys.readouterr().err


def test_resume_refuses_a_changed_config(tmp_path):
    cfg = load_config(PRESETS / "tiny_scm_ladd.toml", [*QUIET, "--max_steps=1"])
    assert Trainer(cfg, tmp_path, progress="json").run() == 0
    changed = load_config(PRESETS / "tiny_scm_ladd.toml", [*QUIET, "--max_steps=2", "--optim.lr=0.5"])
    assert Trainer(changed, tmp_path, resume="latest", progress="json").run() == 2
    assert (
        "optim.lr changed since the checkpoint at step 1"
        in json.loads((tmp_path / "status.json").read_text())["reason"]
    )


def test_sampler_is_a_function_of_position():
    """Two processes split every global batch; the stream over epochs is a fixed function of the position."""
    ranks = [BatchSampler(5, seed=3, batch_size=2, rank=r, world=2) for r in range(2)]
    stream = [i for pos in range(0, 20, 4) for s in ranks for i in s.indices(pos)]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    assert stream[8:12] == BatchSampler(5, seed=3, batch_size=2).indices(8) + BatchSampler(
        5, seed=3, batch_size=2
    ).indices(10)


def test_unet_teacher_reads_v_prediction_as_trigflow():
    """VP with alpha = cos t, sigma = sin t is TrigFlow: a v-prediction UNet's output is F inside the schedule."""
    teacher = build_teacher(kind="unet", random="tiny")
    model = teacher.model
    assert isinstance(model, VPAsTrigFlow)
    cond = {"text": torch.randn(2, 8, 32)}
    x, t = torch.randn(2, 4, 32, 32), torch.tensor([0.3, 1.1])
    model.prediction_type = "v_prediction"
    with torch.no_grad():
        v = model.unet(x, model.timestep(t), encoder_hidden_states=cond["text"]).sample
        torch.testing.assert_close(model(x, t, cond), v)
        model.prediction_type = "epsilon"  # F = cos t eps - sin t x0 with x0 = (x - sin t eps) / cos t
        eps = v
        x0 = (x - torch.sin(t)[:, None, None, None] * eps) / torch.cos(t)[:, None, None, None]
        expected = torch.cos(t)[:, None, None, None] * eps - torch.sin(t)[:, None, None, None] * x0
        torch.testing.assert_close(model(x, t, cond), expected)
    steps = model.timestep(torch.tensor([1e-3, 0.8, math.pi / 2], dtype=torch.float64))
    assert steps[0] < 1 and 0 < steps[1] < 999 and steps[2] == pytest.approx(999)


@pytest.mark.skipif(not hasattr(RoleSpec(trainable=False), "ema_of"), reason="RoleSpec.ema_of is not in this build")
@pytest.mark.parametrize("lora_rank", [0, 4])
def test_an_ema_role_tracks_its_role_after_every_step(tmp_path, lora_rank):
    """LCM's target network (RoleSpec ema_of="student"): a frozen copy that follows the student as an EMA."""
    preset = (PRESETS / "tiny_dmd2.toml").read_text().replace('name = "dmd2"', 'name = "lcm"')
    (tmp_path / "lcm.toml").write_text(preset.replace("fake_updates = 2", "").replace("fake = 1e-3", ""))
    trainer = Trainer(load_config(tmp_path / "lcm.toml", [*QUIET, f"--student.lora_rank={lora_rank}"]), tmp_path)
    trainer.setup()
    target, student = trainer.roles["target"], trainer.roles["student"]
    assert not target.params and target.averaged and not any(p.requires_grad for p in target.averaged.values())
    assert all(torch.equal(p, target.source[n]) for n, p in target.averaged.items())  # starts as the student
    before = {n: p.detach().clone() for n, p in target.averaged.items()}
    trainer.train_step()
    moved = 0
    for name, p in target.averaged.items():
        assert torch.equal(p, before[name].lerp(target.source[name], 1 - target.ema_decay))
        moved += not torch.equal(p, before[name])
    assert moved and {id(p) for p in target.source.values()} <= {id(p) for p in student.params.values()}
    assert set(trainer.roles) == {"student", "teacher", "target"} and target.ema_decay == 0.95


@pytest.mark.parametrize("method", ["scm", "scm_ladd"])
def test_sketch_pairs_feed_the_small_pixel_teacher(tmp_path, method):
    """data.kind = "sketch_pairs" (distillation.data.SketchPairs): x0 = sigma_d * image, cond sketch + text; LADD's
    heads read the small net's conv maps."""
    root, _, image = write_sketch_pairs(tmp_path / "pairs")
    overrides = ["--teacher.kind=sketch_tiny", "--teacher.controlnet=false", f"--method.name={method}"]
    overrides += ["--optim.role_lr={}"] if method == "scm" else []
    overrides += ["--data.kind=sketch_pairs", f"--data.path={root}", "--data.guidance=[2.0]"]
    trainer = set_up(tmp_path / "run", "tiny_scm_ladd.toml", *overrides)
    item = trainer.dataset[1]
    torch.testing.assert_close(item["x0"], SIGMA_D * (torch.from_numpy(image[1]).permute(2, 0, 1) / 127.5 - 1))
    assert item["sketch"].shape == (1, 16, 16) and item["text"].shape == (PROMPT_DIM,)
    logs = trainer.train_step()
    assert all(math.isfinite(v) for v in logs.values()) and "student/skipped" not in logs
    with pytest.raises(ConfigError, match="data.kind 'sketch_pairs' gives images"):
        set_up(tmp_path / "sana", "tiny_scm_ladd.toml", "--data.kind=sketch_pairs", f"--data.path={root}")


def test_data_split_picks_the_prepared_split_the_trainer_reads(tmp_path):
    """data.split = "teacher_pool": the trainer's x0 are that split's images (distillation.pool writes it)."""
    root, sketch, _ = write_sketch_pairs(tmp_path / "pairs")
    pool = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    np.savez(root / "teacher_pool.npz", sketch=sketch[:2], image=pool, caption_index=np.array([1, 0]))
    overrides = ["--teacher.kind=sketch_tiny", "--teacher.controlnet=false", "--method.name=scm", "--optim.role_lr={}"]
    overrides += ["--data.kind=sketch_pairs", f"--data.path={root}", "--data.split=teacher_pool"]
    trainer = set_up(tmp_path / "run", "tiny_scm_ladd.toml", *overrides)
    assert len(trainer.dataset) == 2
    torch.testing.assert_close(
        trainer.dataset[1]["x0"], SIGMA_D * (torch.from_numpy(pool[1]).permute(2, 0, 1) / 127.5 - 1)
    )
    with pytest.raises(ConfigError, match="data.path: .*teacher_nope.npz does not exist"):
        set_up(tmp_path / "run2", "tiny_scm_ladd.toml", *overrides[:-1], "--data.split=teacher_nope")


def test_flow_matching_pretrains_the_small_teacher_and_exports_a_flow_model(tmp_path):
    """method.name = "flow_matching" on teacher.random = "tiny": the student role is trained from random weights,
    previews use Euler steps, and the export is a kind "flow" model the tiny backend samples with CFG."""
    from pipelines.registry import Registry
    from pipelines.tiny import TinyEngine

    root, _, _ = write_sketch_pairs(tmp_path / "pairs")
    overrides = ["--teacher.random=tiny", f"--data.path={root}", "--max_steps=2", "--preview.every=2"]
    overrides += ["--export.enabled=true"]
    overrides += [f"--export.models_dir={tmp_path / 'models'}", "--export.dtype=float32"]
    trainer = set_up(tmp_path / "run", "sketch_tiny_teacher.toml", *overrides)
    assert set(trainer.roles) == {"student"} and trainer.method.sampler == "flow"
    before = {n: p.detach().clone() for n, p in trainer.roles["student"].params.items()}
    assert trainer.run() == 0
    after = trainer.roles["student"].params
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert len(list((tmp_path / "run" / "previews").glob("*.png"))) == 2
    config = json.loads((tmp_path / "models" / "sketch-tiny-teacher" / "config.json").read_text())
    assert config["kind"] == "flow" and config["resolution"] == 16
    assert config["default_guidance"] == 4.0  # the preset's export.guidance: the CFG its Euler sampling uses
    manifest = (tmp_path / "models" / "sketch-tiny-teacher.toml").read_text()
    assert "flow-matching model" in manifest and "trained by distillation.train (flow_matching, 2 steps)" in manifest
    engine = Registry(tmp_path / "models", allowed_roots=(tmp_path,)).load("sketch-tiny-teacher", "cpu")
    assert isinstance(engine, TinyEngine) and engine.model.config.kind == "flow"


def test_a_sana_teacher_refuses_to_export_a_flow_model(tmp_path):
    from distillation.teachers.base import TeacherError

    teacher = build_teacher(kind="sana", random="tiny")
    with pytest.raises(TeacherError, match="exports trigflow models, not 'flow'"):
        teacher.export(teacher.model, tmp_path, "flow")


def test_lr_factor_warms_up_then_holds_or_decays_by_half_cosine():
    from distillation.optim import lr_factor

    assert [lr_factor(s, warmup=4, total=10, schedule="constant") for s in (0, 3, 9)] == [0.25, 1.0, 1.0]
    cosine = [lr_factor(s, warmup=4, total=10, schedule="cosine") for s in (0, 3, 4, 7, 10)]
    assert cosine[:3] == [0.25, 1.0, 1.0] and cosine[3] == pytest.approx(0.5) and cosine[4] == pytest.approx(0.0)


def test_export_cli_re_exports_a_finished_run_with_new_export_settings(tmp_path, capsys):
    """python -m distillation.reexport RUN --export.guidance=3.0: no training, the EMA student of the latest
    checkpoint with the new CFG default; keys other than export.* / teacher.licence are refused."""
    from distillation import reexport

    root, _, _ = write_sketch_pairs(tmp_path / "pairs", n=4)
    run = tmp_path / "run"
    overrides = ["--teacher.random=tiny", f"--data.path={root}", "--max_steps=2", "--checkpoint_every=2"]
    overrides += ["--export.enabled=true", f"--export.models_dir={tmp_path / 'a'}", "--export.dtype=float32"]
    assert set_up(run, "sketch_tiny_teacher.toml", *overrides).run() == 0
    first = (tmp_path / "a" / "sketch-tiny-teacher" / "model.safetensors").read_bytes()
    metrics = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert reexport.main([str(run), f"--export.models_dir={tmp_path / 'b'}", "--export.guidance=3.0"]) == 0
    event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert event["event"] == "export" and event["registry"] == "listed"
    folder = tmp_path / "b" / "sketch-tiny-teacher"
    assert json.loads((folder / "config.json").read_text())["default_guidance"] == 3.0
    assert (folder / "model.safetensors").read_bytes() == first  # the same EMA weights, nothing trained
    assert (run / "metrics.jsonl").read_text() == metrics
    assert reexport.main([str(run), "--optim.lr=1.0"]) == 2
    assert "only export.* and teacher.licence" in capsys.readouterr().err


def test_time_limit_ends_the_run_as_done_when_the_next_step_would_not_fit(tmp_path, capsys):
    """time_limit_s is a wall-clock stop counted from the process's start: with the budget all but spent after
    set-up, the run takes one step (to measure one), then ends as done, exported, the reason in status.json; with
    room to spare it runs to max_steps."""
    import time

    models = json.dumps(str(tmp_path / "m"))
    quiet = ["--preview.every=0", "--checkpoint_every=0", f"--export.models_dir={models}"]
    cfg = load_config(PRESETS / "tiny_scm_ladd.toml", ["--max_steps=3", "--time_limit_s=1000", *quiet])
    trainer = Trainer(cfg, tmp_path / "run", progress="json")
    trainer.setup()
    trainer.clock0 = time.perf_counter() - 998  # 2 s left: less than one step, 3 step-times and the end reserve
    assert trainer.train() == 0
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "done" and status["step"] == 1
    assert status["reason"] == "time limit: 1 of 3 steps in 1000 s"
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events][-4:] == ["time_limit", "checkpoint", "export", "done"]
    assert events[-4]["seconds"] >= 998

    trainer = Trainer(cfg, tmp_path / "run2", progress="json")
    trainer.setup()
    assert trainer.train() == 0
    status = json.loads((tmp_path / "run2" / "status.json").read_text())
    assert status["step"] == 3 and "reason" not in status
    assert '"event": "time_limit"' not in capsys.readouterr().out


def test_the_time_limit_counts_from_the_process_start():
    """A fresh process reports the seconds since its start: python's start and the imports count against a budget."""
    import subprocess
    import sys

    code = "import time; time.sleep(1.2); from distillation.trainer import process_age; print(process_age())"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert 1.2 <= float(done.stdout) < 60
