"""The distillation loop (ARCHITECTURE.md, Trainer contract): roles from the Method, per-role AdamW on the method's
update plan, EMA of the student, AMP, clipping, a non-finite-update budget, checkpoints, previews and progress.

One code path for a CPU, one GPU and `accelerate launch` over many processes or nodes: each process draws its own
slice of every global batch, and a role's gradients are averaged over processes by one all-reduce before clipping
(the roles share a frozen base, run several forward passes and a forward-mode JVP per update, which DDP's
one-forward-one-backward hooks do not fit). Run folder: config.toml, status.json, metrics.jsonl, previews/,
checkpoints/, export/.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object, set_seed
from torch import Tensor
from tqdm import tqdm

from distillation.batching import BatchSampler, build_dataset, make_batch, middle_guidance
from distillation.checkpoint import (
    CheckpointError,
    TrainState,
    load_checkpoint,
    resolve,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from distillation.config import ConfigError, JobConfig, check_resumable, config_to_dict
from distillation.methods import METHODS, Method
from distillation.optim import build_optimizers, set_learning_rate
from distillation.previews import image_grid, sample_teacher, student_images
from distillation.processes import all_reduce_, average_gradients, mean_over_processes
from distillation.roles import AdapterView, build_roles, enable_gradient_checkpointing
from distillation.run_folder import append_metrics, finite_or_none, truncate_metrics, write_status
from distillation.teachers import build_teacher
from distillation.teachers.base import Teacher, TeacherError
from distillation.validate import BEST_FOLDER, Best, Validator, student_scores
from pipelines.parameterization import SIGMA_D

PROGRESS_MODES = ("auto", "bar", "json")
END_RESERVE_S = 5.0  # time_limit_s: what the final checkpoint, preview and export may take beyond 3 mean steps
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 143


class JobFailed(RuntimeError):
    """The job cannot go on (non-finite budget spent); the message is the failed-job record's reason."""


def process_age() -> float:
    """Seconds since this process started (Linux /proc: python's start and the imports included); 0 elsewhere."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


# ---- the trainer --------------------------------------------------------------------------------------------------


class Trainer:
    """Runs one job into `out`. `resume`: None, "latest" or a checkpoint folder. `run()` returns the exit code:
    0 done, 1 failed while training, 2 bad input (nothing trained), 143 stopped by SIGTERM/SIGINT (checkpointed)."""

    def __init__(
        self,
        config: JobConfig,
        out: Path | str,
        *,
        resume: str | None = None,
        progress: str = "auto",
        cpu: bool = False,
        export_only: bool = False,
    ):
        if progress not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {PROGRESS_MODES}")
        self.cfg, self.out, self.resume_from, self.cpu = config, Path(out), resume, cpu
        self.export_only = export_only  # set up from a checkpoint to re-export it (distillation.reexport)
        self.progress = progress if progress != "auto" else ("bar" if sys.stdout.isatty() else "json")
        self.step = self.position = self.skipped = 0
        self.bar: tqdm | None = None
        self.stop_signal: int | None = None
        self.teacher_row: Tensor | None = None
        self.accelerator: Accelerator | None = None
        self.clock0 = time.perf_counter() - process_age()  # time_limit_s counts from the process's start

    # -- reporting

    @property
    def is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def emit(self, event: dict[str, Any]) -> None:
        """One progress/event line: JSON on stdout for the UI, or beside the bar on a terminal."""
        if not self.is_main:
            return
        line = json.dumps(event)
        if self.bar is not None:
            if event["event"] != "progress":
                self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def write_status(self, state: str, **fields: Any) -> None:
        if self.is_main:
            write_status(self.out, state, step=self.step, total=self.cfg.max_steps, **fields)

    def fail(self, reason: str) -> None:
        """Record a failed job with its reason (status.json, a "failed" event, stderr)."""
        self.write_status("failed", reason=reason)
        self.emit({"event": "failed", "step": self.step, "reason": reason})
        if self.is_main:
            print(f"error: {reason}", file=sys.stderr, flush=True)

    # -- set-up

    def setup(self) -> None:
        """Everything before the first step; raises ConfigError / TeacherError / CheckpointError on bad input."""
        cfg = self.cfg
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=self.cpu)
        self.device = self.accelerator.device
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != self.world:  # N copies of one job writing one folder: refuse rather than race
            raise ConfigError(f"launched as {launched} processes but accelerate formed a group of {self.world}")
        resume = None
        if self.resume_from is not None:
            resume = load_checkpoint(resolve(self.out / "checkpoints", self.resume_from))
            check_resumable(resume.config, self.cfg, resume.step, export_only=self.export_only)
        set_seed(cfg.seed)  # identical initial weights (heads, adapters) in every process
        tc = cfg.teacher
        self.teacher: Teacher = build_teacher(
            kind=tc.kind,
            path=tc.path,
            random=tc.random,
            random_seed=tc.random_seed,
            controlnet=tc.controlnet,
            controlnet_path=tc.controlnet_path,
            conditioning_scale=tc.conditioning_scale,
            dense_time=tc.dense_time,
            default_guidance=tc.default_guidance,
            text_tokens=cfg.data.text_tokens,
            dtype=tc.dtype,
            vae=tc.vae,
            device=self.device,
        )
        self.method = self.build_method()
        sc = cfg.student
        self.roles = build_roles(
            self.method,
            self.teacher.model,
            lora_rank=sc.lora_rank,
            lora_alpha=sc.lora_alpha,
            lora_targets=sc.lora_targets or self.teacher.lora_targets,
            device=self.device,
        )
        if sc.init:
            self.init_student(sc.init)
        self.method.bind({name: role.module for name, role in self.roles.items()})
        self.frozen_teacher = AdapterView(self.teacher.model, None) if sc.lora_rank > 0 else self.teacher.model
        if sc.gradient_checkpointing:
            trainable = [r.module for n, r in self.roles.items() if r.params and self.method.roles()[n].init != "new"]
            if not sum(enable_gradient_checkpointing(m) for m in trainable):
                raise ConfigError(
                    f"student.gradient_checkpointing: teacher kind {tc.kind!r} has no model supporting it"
                )
        self.build_optimizers()
        student = self.roles.get("student")
        self.ema = {n: p.detach().float().clone() for n, p in student.params.items()} if student else {}
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.mixed_precision == "fp16" else None
        self.dataset, self.data_root = build_dataset(
            cfg.data,
            self.teacher,
            is_main=self.is_main,
            emit=self.emit,
            main_process_first=self.accelerator.main_process_first,
        )
        self.sampler = BatchSampler(
            len(self.dataset), seed=cfg.data.seed, batch_size=cfg.batch_size, rank=self.rank, world=self.world
        )
        if resume is not None:
            self.restore(resume)
        else:
            set_seed(cfg.seed + self.rank)  # each process draws its own noise and timesteps
        self.validator, self.best = None, None
        if cfg.select.every and self.is_main:
            from distillation.data import DataError
            from distillation.pool import POOL_SPLIT

            try:
                self.validator = Validator(
                    self.data_root, n=cfg.select.n, seed=cfg.select.seed, exclude_pool=cfg.data.split == POOL_SPLIT
                )
            except DataError as error:
                raise ConfigError(f"select: {error}") from error
            if resume is not None:
                self.best = Best.load(self.out / BEST_FOLDER, up_to=self.step)
        if self.is_main and not self.export_only:  # re-exports and re-scores leave the record of how it trained
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.toml").write_text(tomli_w.dumps(config_to_dict(cfg)))

    def init_student(self, path: str) -> None:
        """Load the student role's weights from `path`, a folder of the teacher's family and shape (an exported
        student): fine-tuning starts from a model that already draws in few steps."""
        tc = self.cfg.teacher
        if "student" not in self.roles or self.roles["student"].lora:
            raise ConfigError("student.init: this method has no full student role to initialise")
        source = build_teacher(
            kind=tc.kind,
            path=path,
            controlnet=tc.controlnet,
            controlnet_path=tc.controlnet_path,
            text_tokens=self.cfg.data.text_tokens,
            device=self.device,
        )
        student = self.roles["student"].module
        try:
            student.load_state_dict(source.model.state_dict())
        except RuntimeError as error:
            raise ConfigError(f"student.init: {path} is not shaped like the teacher ({str(error)[:200]})") from error

    def build_method(self) -> Method:
        cls = METHODS[self.cfg.method.name]
        options = dict(self.cfg.method.options)
        if "feature_layers" in inspect.signature(cls.__init__).parameters:
            names, channels = self.teacher.features(self.cfg.teacher.feature_blocks)
            prefix = "base." if self.cfg.student.lora_rank > 0 else ""  # the teacher sits in an AdapterView
            options |= {"feature_layers": [prefix + n for n in names], "feature_channels": channels}
        return cls(**options)

    def build_optimizers(self) -> None:
        """One AdamW per role with its own update-plan entry, also holding the roles that step with it."""
        self.optimizers, self.opt_params = build_optimizers(self.method.roles(), self.roles, self.cfg)

    def restore(self, state: TrainState) -> None:
        """Load weights, optimizers, EMA, scaler, RNG and counters from a checkpoint."""
        for name, role in self.roles.items():
            role.load(state.roles.get(name, {}))
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state.optimizers[name])
        with torch.no_grad():
            for name, value in self.ema.items():
                value.copy_(state.ema[name])
        if self.scaler is not None and state.scaler is not None:
            self.scaler.load_state_dict(state.scaler)
        self.step, self.position, self.skipped = state.step, state.position, state.skipped
        if len(state.rng) == self.world:
            set_rng_state(state.rng[self.rank])
        else:
            set_seed(self.cfg.seed + self.rank + 7919 * self.step)
            self.emit(
                {
                    "event": "warning",
                    "message": f"checkpoint from {len(state.rng)} processes, running on "
                    f"{self.world}: resumed with fresh RNG streams (not bit-exact)",
                }
            )
        if self.is_main and not self.export_only:  # a resumed run logs the rewound steps again; a re-export does not
            truncate_metrics(self.out, self.step)

    # -- one step

    def update(self, role: str, batch: dict[str, Any], step: int) -> tuple[dict[str, float], bool]:
        """One role update: loss, backward, average, clip, skip if non-finite, step. Returns (logs, stepped)."""
        optimizer, params = self.optimizers[role], self.opt_params[role]
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        with self.accelerator.autocast():
            out = self.method.loss(role, batch, step)
        loss = out["loss"]
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        average_gradients(params, self.world)
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        clip = self.cfg.optim.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
        finite = all_reduce_(torch.isfinite(loss.detach()).float().reshape(1), self.world, "min").item() > 0
        logs = {f"{role}/{key}": float(value.detach().float()) for key, value in out.items()}
        logs[f"{role}/grad_norm"] = float(grad_norm)
        if not (finite and math.isfinite(float(grad_norm))):
            optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update()
            self.skipped += 1
            logs[f"{role}/skipped"] = 1.0
            if self.skipped > self.cfg.nan_budget:
                raise JobFailed(
                    f"{self.skipped} non-finite updates exceed nan_budget = {self.cfg.nan_budget} (last: step "
                    f"{step}, role {role}, loss {logs[f'{role}/loss']}, grad norm {float(grad_norm)})"
                )
            return logs, False
        set_learning_rate(optimizer, step, self.cfg)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        return logs, True

    def train_step(self) -> dict[str, float]:
        """The method's update plan at this step on one batch, then the EMA; returns the step's logs."""
        step = self.step
        items = [self.dataset[i] for i in self.sampler.indices(self.position)]
        batch = make_batch(
            items, guidance=self.cfg.data.guidance, uncond_keys=self.teacher.uncond_keys, device=self.device
        )
        logs: dict[str, float] = {}
        for role in self.method.update_plan(step):
            role_logs, stepped = self.update(role, batch, step)
            logs |= role_logs
            if role == "student" and stepped and self.ema:
                with torch.no_grad():
                    for name, p in self.roles["student"].params.items():
                        self.ema[name].lerp_(p.detach().float(), 1 - self.cfg.ema_decay)
        for role in self.roles.values():
            role.update_average()
        self.position += self.cfg.batch_size * self.world
        self.step += 1
        return logs

    # -- side effects

    def save(self) -> Path | None:
        """A checkpoint of the current state (all processes take part; the main one writes)."""
        rng = gather_object([rng_state()])
        error, path = None, None
        if self.is_main:
            state = TrainState(
                step=self.step,
                position=self.position,
                skipped=self.skipped,
                roles={name: role.state() for name, role in self.roles.items() if role.params or role.averaged},
                ema=self.ema,
                optimizers={name: opt.state_dict() for name, opt in self.optimizers.items()},
                scaler=self.scaler.state_dict() if self.scaler is not None else None,
                rng=rng,
                config=config_to_dict(self.cfg),
            )
            try:
                path = save_checkpoint(self.out / "checkpoints", state, keep=self.cfg.keep_checkpoints)
            except CheckpointError as failure:
                error = str(failure)
        error = broadcast_object_list([error])[0]
        if error is not None:
            raise CheckpointError(error)
        if path is not None:
            self.emit({"event": "checkpoint", "step": self.step, "path": str(path)})
            self.write_status("running", checkpoint=str(path))
        return path

    def preview(self) -> None:
        """previews/step_XXXXXXXX.png: columns = fixed seeds, rows = teacher (optional) and student step counts."""
        pc = self.cfg.preview
        if not self.is_main:
            return
        student = self.roles["student"]
        n = min(len(pc.seeds), len(self.dataset))
        items = [self.dataset[i] for i in range(n)]
        guidance, uncond = middle_guidance(self.cfg.data.guidance), self.teacher.uncond_keys
        batch = make_batch(items, guidance=guidance, uncond_keys=uncond, device=self.device)
        noise = torch.stack(
            [torch.randn(self.teacher.sample_shape, generator=torch.Generator().manual_seed(s)) for s in pc.seeds[:n]]
        ).to(self.device)
        rows = []
        with torch.no_grad(), self.accelerator.autocast():
            if pc.teacher_steps:
                if self.teacher_row is None:
                    x0 = sample_teacher(self.frozen_teacher, SIGMA_D * noise, batch, pc.teacher_steps)
                    self.teacher_row = self.teacher.to_images(x0)
                rows.append(self.teacher_row)
        ema = self.ema if pc.use_ema and self.ema else {n: p.detach() for n, p in student.params.items()}
        rows += [self.student_images(batch, noise, steps, ema) for steps in pc.steps]
        path = self.out / "previews" / f"step_{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image_grid(rows).save(path)
        self.emit({"event": "preview", "step": self.step, "path": str(path)})

    def student_images(
        self, batch: dict[str, Any], noise: Tensor, steps: int, weights: Mapping[str, Tensor]
    ) -> Tensor:
        """uint8 pictures (b, h, w, 3) of the student with `weights` swapped in, from unit noise (b, ...)."""
        with self.accelerator.autocast():
            return student_images(
                self.roles["student"], self.method.sampler, self.teacher, batch, noise, steps, weights
            )

    def validate(self) -> None:
        """Score the EMA student on the validation pairs (main process, forked RNGs: validate.student_scores); keep it
        in <run>/best/ when it is the best."""
        sc, validator = self.cfg.select, self.validator
        if validator is None:
            return
        started = time.perf_counter()
        scores = self.validation_scores()
        score = scores[sc.metric]
        if math.isfinite(score) and (self.best is None or score < self.best.score):
            kept = {k: v.detach().cpu().clone() for k, v in self.validated_weights().items()}
            self.best = Best(step=self.step, score=score, ema=kept)
            self.best.save(self.out / BEST_FOLDER, sc.metric)
        values = {f"val/{name}@{sc.steps}": value for name, value in scores.items()}
        best, seconds = self.best.step if self.best else None, round(time.perf_counter() - started, 1)
        rounded = {key: round(value, 3) for key, value in values.items()}
        self.emit({"event": "validate", "step": self.step, **rounded, "best_step": best, "seconds": seconds})
        row = {key: finite_or_none(value) for key, value in values.items()}
        append_metrics(self.out, {"step": self.step, "time": time.time(), **row})

    def validated_weights(self) -> dict[str, Tensor]:  # the EMA student, or the student itself without EMA
        return self.ema or {n: p.detach() for n, p in self.roles["student"].params.items()}

    def validation_scores(self) -> dict[str, float]:
        """Every validation score (validate.Validator.score) of the EMA student's pictures at select.steps."""
        weights, steps = self.validated_weights(), self.cfg.select.steps
        render = lambda batch, noise: self.student_images(batch, noise, steps, weights)  # noqa: E731
        guidance = middle_guidance(self.cfg.data.guidance)
        return student_scores(self.validator, render, teacher=self.teacher, guidance=guidance, device=self.device)

    def export(self) -> dict[str, Any]:
        """EMA student (or, with selection, the best validated one) -> weights + manifest (main process); returns
        the "export" event."""
        from distillation.export import export_run, merged_student

        chosen, picked = self.ema, ""
        if self.best is not None:
            chosen = {k: v.to(self.device) for k, v in self.best.ema.items()}
            picked = f", step {self.best.step} picked by validation {self.cfg.select.metric} {self.best.score:.1f}"
        student = merged_student(self.roles["student"].module, chosen)
        sampler = self.method.sampler
        result = export_run(
            self.cfg, self.teacher, student, step=self.step, out=self.out, sampler=sampler, picked=picked
        )
        return {
            "event": "export",
            "manifest": str(result.manifest),
            "weights": str(result.weights),
            "registry": result.registry,
        }

    def log(self, logs: dict[str, float], started: float, first_step: int) -> None:
        elapsed = time.perf_counter() - started
        it_s = (self.step - first_step) / elapsed if elapsed > 0 else 0.0
        eta = (self.cfg.max_steps - self.step) / it_s if it_s > 0 else None
        if self.cfg.time_limit_s:
            left = max(0.0, self.cfg.time_limit_s - (time.perf_counter() - self.clock0))
            eta = left if eta is None else min(eta, left)
        values = {k: finite_or_none(v) for k, v in sorted(logs.items())}
        event = {
            "event": "progress",
            "step": self.step,
            "total": self.cfg.max_steps,
            "it_s": round(it_s, 4),
            "eta_s": None if eta is None else round(eta, 1),
            **values,
        }
        self.emit(event)
        if self.is_main:
            row = {"step": self.step, "time": time.time(), "skipped_total": self.skipped, **values}
            append_metrics(self.out, row)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k.endswith("loss")}, refresh=False)
            self.bar.update(self.step - self.bar.n)

    def validating(self) -> bool:
        return self.validator is not None and self.step >= self.cfg.select.start

    def out_of_time(self, started: float, first_step: int) -> bool:
        """With time_limit_s: would one more step, then the end (checkpoint, preview, export), overrun the budget
        (counted from the process's start)?
        Decided from the mean step time so far, the same in every process."""
        flag = 0.0
        if self.cfg.time_limit_s and self.step > first_step:
            now = time.perf_counter()
            mean_step = (now - started) / (self.step - first_step)
            if now - self.clock0 + 4 * mean_step + END_RESERVE_S > self.cfg.time_limit_s:
                flag = 1.0
        return all_reduce_(torch.tensor([flag], device=self.device), self.world).item() > 0

    def stop_requested(self) -> bool:
        flag = torch.tensor([1.0 if self.stop_signal is not None else 0.0], device=self.device)
        return all_reduce_(flag, self.world).item() > 0

    # -- the job

    def run(self) -> int:
        """Set up, train to max_steps (or until SIGTERM/SIGINT), checkpoint, preview, export; returns the exit code."""
        try:
            self.setup()
        except (ConfigError, TeacherError, CheckpointError) as error:
            self.fail(str(error))
            return EXIT_BAD_INPUT
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self.train()
        except (JobFailed, CheckpointError) as error:
            self.fail(str(error))
            return EXIT_FAILED
        except Exception as error:
            traceback.print_exc()
            self.fail(f"{type(error).__name__}: {error}")
            return EXIT_FAILED
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if self.bar is not None:
                self.bar.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_signal = signum

    def train(self) -> int:
        cfg = self.cfg
        every = cfg.preview.every
        self.write_status("running")
        self.emit(
            {
                "event": "start",
                "step": self.step,
                "total": cfg.max_steps,
                "out": str(self.out),
                "processes": self.world,
                "device": str(self.device),
            }
        )
        if self.progress == "bar" and self.is_main:
            self.bar = tqdm(total=cfg.max_steps, initial=self.step, desc=cfg.name, dynamic_ncols=True)
        if every and self.step == 0:
            self.preview()
        started, first_step = time.perf_counter(), self.step
        saved = previewed = validated = self.step
        timed_out = False
        while self.step < cfg.max_steps:
            logs = mean_over_processes(self.train_step(), self.world, self.device)
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                self.log(logs, started, first_step)
            if self.stop_requested():
                path = self.save()
                self.write_status("stopped", checkpoint=str(path), reason=f"signal {self.stop_signal}")
                self.emit({"event": "stopped", "step": self.step, "checkpoint": str(path)})
                return EXIT_STOPPED
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save()
                saved = self.step
            if every and self.step % every == 0:
                self.preview()
                previewed = self.step
            if self.validating() and self.step % cfg.select.every == 0:
                self.validate()
                validated = self.step
            if self.step < cfg.max_steps and self.out_of_time(started, first_step):
                if self.step % cfg.log_every:
                    self.log(logs, started, first_step)
                timed_out = True
                self.emit(
                    {
                        "event": "time_limit",
                        "step": self.step,
                        "limit_s": cfg.time_limit_s,
                        "seconds": round(time.perf_counter() - self.clock0, 1),
                    }
                )
                break
        path = self.out / "checkpoints" / f"step_{self.step:08d}"
        if saved != self.step:
            path = self.save()
        if every and previewed != self.step:
            self.preview()
        if self.validating() and validated != self.step:
            self.validate()
        fields: dict[str, Any] = {"checkpoint": str(path)}
        if self.best is not None:
            fields["selected_step"] = self.best.step
        if timed_out:
            fields["reason"] = f"time limit: {self.step} of {cfg.max_steps} steps in {cfg.time_limit_s:g} s"
        if cfg.export.enabled and self.is_main and "student" in self.roles:
            event = self.export()
            self.emit(event)
            fields["manifest"] = event["manifest"]
        self.accelerator.wait_for_everyone()
        self.write_status("done", **fields)
        self.emit({"event": "done", "step": self.step})
        return EXIT_OK
