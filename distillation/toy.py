"""The 2-D proof of every method (notes/distillation.md sec. 5): 8-Gaussian ring, exact GMM and MLP flow teachers.

    python -m distillation.toy --method scm --seed 0 --teacher gmm --json
    python -m distillation.toy --all --records bench/results/toy.jsonl --markdown BENCHMARKS.md
    python -m distillation.toy --all --methods scm,dmd2 --records bench/results/toy.jsonl --markdown BENCHMARKS.md

Data live in flow units (ring radius 2, std 0.1); methods see TrigFlow-scale x0 = sigma_d * data. The training
data are teacher samples (64 Euler steps). All metrics compare against fresh draws of the true ring.
The loop here drives methods only through the Method contract (roles, bind, update_plan, loss).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from distillation.methods import METHODS, Method
from distillation.methods.lcm import lcm_consistency
from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow
from pipelines.schedules import (
    get_flow_timesteps,
    get_lcm_timesteps,
    get_trigflow_timesteps,
    sample_euler,
    sample_lcm,
    sample_trigflow,
)

K, RADIUS, STD = 8, 2.0, 0.1  # the ring: K modes at radius 2 with std 0.1 (flow units)
MODES = RADIUS * torch.stack(
    [torch.cos(2 * math.pi * torch.arange(K) / K), torch.sin(2 * math.pi * torch.arange(K) / K)], dim=1
)
FEATURE_LAYERS = ("flow_model.blocks.0", "flow_model.blocks.1", "flow_model.blocks.2")
HIDDEN = 256
DEPTH = 4  # hidden layers of FlowMLP (teacher, student, fake score, LADD backbone)
# x_s enters FlowMLP scaled by this (sharp 1-step maps, see FlowMLP). 16 rather than 4: on gmm seed 0 a direct
# regression of noise -> teacher ODE end point reaches precision 0.82 / 0.67 at lr 1e-4 (16 / 4), sCM 0.84 / 0.77
# (4000 / 3000 steps); 32 adds nothing over 16 (sCM 0.887 / 0.885 at 6000 steps).
INPUT_SCALE = 16.0
MARKERS = ("<!-- toy:begin -->", "<!-- toy:end -->")
# the distillation methods (flow_matching pre-trains teachers: it has no 1-step student to judge)
DISTILLERS = [name for name, cls in METHODS.items() if cls.sampler == "trigflow" and not cls.needs_pairs]
TEACHERS, SEEDS = ("gmm", "mlp"), (0, 1, 2)


# ---- data and teachers -------------------------------------------------------------------------------------------


def ring_samples(n: int, generator: torch.Generator) -> Tensor:
    """n draws from the 8-Gaussian ring, (n, 2)."""
    k = torch.randint(K, (n,), generator=generator)
    return MODES[k] + STD * torch.randn(n, 2, generator=generator)


class GMMFlow(nn.Module):
    """Exact rectified-flow velocity of an isotropic Gaussian mixture: v = E[eps - x0 | x_s] (notes sec. 5)."""

    def __init__(self, means: Tensor = MODES, std: float = STD):
        super().__init__()
        self.register_buffer("means", means)
        self.std = std

    def forward(self, x_s: Tensor, s: Tensor, cond=None) -> Tensor:
        s = s[:, None, None]
        mu = (1 - s) * self.means  # (b, k, 2): component means of x_s
        var = (1 - s) ** 2 * self.std**2 + s**2  # (b, 1, 1)
        diff = x_s[:, None] - mu
        log_w = -(diff**2).sum(-1, keepdim=True) / (2 * var) - torch.log(var)  # equal weights pi_k, d = 2
        w = torch.softmax(log_w, dim=1)
        # Per component: E[eps|x_s] = s diff / var, E[x0|x_s] = mu_k + (1 - s) std^2 diff / var.
        v_k = (s - (1 - s) * self.std**2) * diff / var - self.means
        return (w * v_k).sum(1)


class FlowMLP(nn.Module):
    """v_theta(x_s, s): a SiLU MLP (`depth` x `hidden`) on input_scale * x_s and low-frequency Fourier features of
    the dense time s.

    Frequencies stay <= 8 on s in [0, 1]: large ones inflate dF/dt and destabilise the sCM tangent (notes sec. 1).
    The 1-step map noise -> ring has sharp mode boundaries; x_s enters scaled by `input_scale` so the first layer's
    half-planes start (and, under Adam, move) steep enough for them instead of blurring samples between modes.
    """

    def __init__(
        self,
        hidden: int = HIDDEN,
        num_frequencies: int = 16,
        max_frequency: float = 8.0,
        depth: int | None = None,
        input_scale: float | None = None,
    ):
        super().__init__()
        depth = DEPTH if depth is None else depth
        self.input_scale = INPUT_SCALE if input_scale is None else input_scale
        self.register_buffer("frequencies", torch.logspace(0, math.log10(max_frequency), num_frequencies))
        dims = [2 + 1 + 2 * num_frequencies] + [hidden] * depth
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(i, o), nn.SiLU()) for i, o in zip(dims[:-1], dims[1:], strict=True)
        )
        self.out = nn.Linear(hidden, 2)

    def forward(self, x_s: Tensor, s: Tensor, cond=None) -> Tensor:
        angles = s[:, None] * self.frequencies
        h = torch.cat([self.input_scale * x_s, s[:, None], angles.sin(), angles.cos()], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


def _adam_fit(net: nn.Module, loss_fn: Callable[[], Tensor], steps: int, lr: float) -> nn.Module:
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()
        sched.step()
    return net.requires_grad_(False).eval()


def train_flow_teacher(steps: int, seed: int, batch: int = 256, lr: float = 1e-3) -> FlowMLP:
    """The learned teacher: flow matching on ring samples, ||v_theta(x_s, s) - (eps - x0)||^2."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = FlowMLP()

    def loss():
        x0, eps, s = ring_samples(batch, g), torch.randn(batch, 2, generator=g), torch.rand(batch, generator=g)
        x_s = (1 - s[:, None]) * x0 + s[:, None] * eps
        return ((net(x_s, s) - (eps - x0)) ** 2).mean()

    return _adam_fit(net, loss, steps, lr)


def fit_to_field(field: nn.Module, steps: int, seed: int, batch: int = 256, lr: float = 1e-3) -> FlowMLP:
    """An MLP regressed onto an exact velocity field along the data path: the network that stands in for the GMM
    teacher's weights (student, fake-score and LADD-backbone initialisation)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = FlowMLP()

    def loss():
        x0, eps, s = ring_samples(batch, g), torch.randn(batch, 2, generator=g), torch.rand(batch, generator=g)
        x_s = (1 - s[:, None]) * x0 + s[:, None] * eps
        return ((net(x_s, s) - field(x_s, s)) ** 2).mean()

    return _adam_fit(net, loss, steps, lr)


# ---- metrics -----------------------------------------------------------------------------------------------------


def energy_distance(x: Tensor, y: Tensor) -> float:
    """ED^2 = 2 E|X - Y| - E|X - X'| - E|Y - Y'| (V-statistic)."""
    x, y = x.double(), y.double()
    return (2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()).item()


def sliced_w2(x: Tensor, y: Tensor, generator: torch.Generator, num_projections: int = 256) -> float:
    """Sliced 2-Wasserstein distance over random directions (equal sample counts)."""
    theta = torch.randn(2, num_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0)
    px, py = torch.sort(x.double() @ theta, dim=0).values, torch.sort(y.double() @ theta, dim=0).values
    return ((px - py) ** 2).mean().sqrt().item()


def mode_masses(x: Tensor) -> Tensor:
    """Fraction of samples within 3 std of each mode, (K,)."""
    d = torch.cdist(x.double(), MODES.double())
    near = d.min(dim=1)
    inside = near.values <= 3 * STD
    return torch.bincount(near.indices[inside], minlength=K).double() / x.shape[0]


# ---- the Method-contract loop ------------------------------------------------------------------------------------


def build_models(method: Method, teacher: nn.Module, teacher_net: nn.Module) -> dict[str, nn.Module]:
    """Role networks: `teacher` is the target teacher; init="teacher" roles copy `teacher_net` (frozen ones share
    it), init="new" roles are built by the method. Frozen roles get requires_grad False."""
    models = {}
    for name, spec in method.roles().items():
        if name == "teacher":
            module = teacher
        elif spec.init == "new":
            module = spec.build()
        else:
            module = copy.deepcopy(teacher_net) if spec.trainable or spec.ema_of else teacher_net
        models[name] = module.requires_grad_(spec.trainable)
    return models


@torch.no_grad()
def ema_update(ema: nn.Module, source: nn.Module, decay: float) -> None:
    """ema <- decay ema + (1 - decay) source, parameter by parameter."""
    for p_ema, p in zip(ema.parameters(), source.parameters(), strict=True):
        p_ema.lerp_(p, 1 - decay)


def update_emas(method: Method, models: dict[str, nn.Module]) -> None:
    """Move every `ema_of` role towards the role it tracks."""
    for name, spec in method.roles().items():
        if spec.ema_of is not None:
            ema_update(models[name], models[spec.ema_of], spec.ema_decay)


def make_optimizers(method: Method, models: dict[str, nn.Module], lrs: dict[str, float]) -> dict:
    """One Adam per updated role, also stepping the roles declared `steps_with` it."""
    specs = method.roles()
    optimizers = {}
    for name, spec in specs.items():
        if spec.trainable and spec.steps_with is None:
            members = [name] + [n for n, s in specs.items() if s.steps_with == name]
            params = [p for n in members for p in models[n].parameters()]
            optimizers[name] = torch.optim.Adam(params, lr=lrs.get(name, lrs["default"]), betas=(0.9, 0.99))
    return optimizers


def train_step(method: Method, optimizers: dict, batch: dict, step: int, clip: float = 1.0) -> dict[str, float]:
    """One step of the plan: per role, zero every gradient, backprop its loss, clip, step its optimizer.
    A non-finite loss skips that role's update (counted under "skipped")."""
    logs: dict[str, float] = {}
    for role in method.update_plan(step):
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        out = method.loss(role, batch, step)
        if not torch.isfinite(out["loss"]):
            logs["skipped"] = logs.get("skipped", 0.0) + 1
            continue
        out["loss"].backward()
        params = [p for group in optimizers[role].param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip)
        optimizers[role].step()
        logs.update({f"{role}/{k}": float(v.detach()) for k, v in out.items()})
    return logs


# ---- per-method toy settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToySetting:
    """Steps, batch, peak learning rates (per role, "default" for the rest; cosine decay to 0), method kwargs."""

    steps: int
    batch: int = 256
    lrs: dict[str, float] = field(default_factory=lambda: {"default": 1e-4})
    kwargs: dict = field(default_factory=dict)
    student_steps: int = 1  # judged at this many sampling steps (LCM at 2, against the teacher at 8)
    ema_decay: float = 0.99  # the student is judged through an EMA of its weights


# The discriminator re-noises around sigma_d tan t = e^-4 (SANA-Sprint: e^-0.6): on the ring the 1-step student's
# errors are bridges between neighbouring modes (mode std 0.05 in TrigFlow units), visible only at low noise (input
# scale 4; p_mean_d -2 / -3 / -4 / -5 on gmm seed 0: precision 0.82 / 0.86 / 0.87 / 0.87 at lr 1e-4;
# 0.93 at lr 2e-4, -4).
LADD_KWARGS = dict(feature_layers=FEATURE_LAYERS, feature_channels=(HIDDEN,) * 3, head_kernel_size=1, p_mean_d=-4.0)
GAN_LRS = {"default": 2e-4, "heads": 1e-3}
SETTINGS: dict[str, ToySetting] = {
    # No learned adaptive weight u_phi (rCM drops it too, notes sec. 1): it is what collapsed sCM here. With u_phi, gmm
    # seed 2 plateaus at precision 0.855 (lr 1e-4), collapses at lr 3e-4 once the tangent warm-up ends and at 12000
    # steps of lr 1e-4 (0.52); without it, lr 3e-4 / 6e-4 / 1e-3 reach 0.901 / 0.931 / 0.943 at 8000 steps
    "scm": ToySetting(steps=8000, lrs={"default": 1e-3}, kwargs=dict(tangent_warmup=500, adaptive_weighting=False)),
    # p_mean_d -3 (sCM+LADD keeps -4): mlp seed 1 at input scale 16 drops a mode at -4 (and at lr 1e-4), precision
    # 0.933 with 8/8 modes at -3
    # 4000 steps: mlp seed 2 precision 0.894 at 3000, 0.915 at 4000 (EMA 0.999: 0.884; lr 5e-4 or 1e-3 drop a mode)
    "ladd": ToySetting(steps=4000, lrs=GAN_LRS, kwargs=dict(LADD_KWARGS, p_mean_d=-3.0)),
    # adversarial weight 1.5 (SANA-Sprint: 0.5): gmm seed 0 precision 0.881 at 0.5, 0.907 at 1.5 (with u_phi, lr 2e-4).
    # Without u_phi (as sCM above) the student takes lr 1e-3: gmm seed 2 precision 0.871 -> 0.950 (0.92 at weight 0.5)
    "scm_ladd": ToySetting(
        steps=2000,
        lrs={"default": 1e-3, "heads": 1e-3},
        kwargs=dict(LADD_KWARGS, tangent_warmup=500, adv_weight=1.5, adaptive_weighting=False),
    ),
    # TTUR 2:1 (DMD2: 5:1): the toy's fake score keeps up with fewer updates, and the student gets 2.5x the updates
    # (input scale 4, gmm seed 0: precision 0.85 at 5:1, 0.89 at 2:1, 0.875 at 1:1)
    # gmm seed 1 at lr 1e-3 / 2e-3: precision 0.863 at 6000 steps, 0.896 at 10000; at 10000 steps lr 2e-3 / 4e-3
    # lifts gmm seed 0 from 0.884 to 0.904 and mlp seed 2 from 0.870 to 0.914; the GAN term (classifier on the fake
    # score at low noise) unbalanced the modes (min mass 0.047) and cost 1.6x the time
    # mlp seed 0 precision 0.869 / 0.881 / 0.924 at lr 1e-3 / 2e-3 / 3e-3 (fake score at twice the student's);
    # gmm seed 0 at lr 3e-3: 0.897 at 10000 steps, 0.936 at 14000
    "dmd2": ToySetting(steps=14000, lrs={"default": 3e-3, "fake": 6e-3}, kwargs=dict(fake_updates=2)),
    # input scale 4, gmm seed 0 at 6000 steps: precision 0.82 / 0.85 / 0.89 / 0.90 at lr 5e-4 / 1e-3 / 2e-3 / 4e-3;
    # 0.91 at 2e-3 and 8000 steps; input scale 16, gmm seed 2: 0.894 (ED² above teacher@4) at 8000, 0.915 at 10000
    "twinflow": ToySetting(steps=10000, lrs={"default": 2e-3}),
    # 20-point skipping grid (s steps of 0.05): half the links of the default 50 to carry consistency from s = 0
    # up to the 2-step sampler's s = 0.5 and 1, with Euler teacher steps still finer than the teacher@8 baseline
    "lcm": ToySetting(steps=8000, lrs={"default": 3e-4}, kwargs=dict(num_ddim_timesteps=20), student_steps=2),
}


def student_sampler(name: str, method: Method, student: nn.Module, steps: int) -> Callable[[Tensor], Tensor]:
    """Noise eps ~ N(0, I) (b, 2) -> student samples in flow units."""
    if name == "lcm":
        ts = get_lcm_timesteps(steps, num_ddim_timesteps=method.num_ddim_timesteps)
        return lambda eps: sample_lcm(lambda x, s: lcm_consistency(student, x, s), eps, ts, generator=None)
    ts = get_trigflow_timesteps(steps)
    return lambda eps: sample_trigflow(lambda x, t: student(x, t, None), SIGMA_D * eps, ts) / SIGMA_D


# ---- one run -----------------------------------------------------------------------------------------------------


@dataclass
class Scale:
    """Sizes of a run: full (the proof) or smoke (the test suite's seconds-long check)."""

    teacher_steps: int = 4000
    pool: int = 8192
    n_eval: int = 4096
    train_steps: int | None = None


SMOKE = Scale(teacher_steps=20, pool=512, n_eval=256, train_steps=3)


def make_teacher(kind: str, seed: int, scale: Scale) -> tuple[nn.Module, nn.Module]:
    """(teacher, teacher_net) as TrigFlow models; for "gmm" the teacher is exact and teacher_net is an MLP fit."""
    if kind == "gmm":
        return FlowAsTrigFlow(GMMFlow()), FlowAsTrigFlow(fit_to_field(GMMFlow(), scale.teacher_steps, seed))
    if kind == "mlp":
        net = FlowAsTrigFlow(train_flow_teacher(scale.teacher_steps, seed))
        return net, net
    raise ValueError(f"unknown teacher {kind!r}; use gmm or mlp")


@dataclass
class Bench:
    """What every method on one (teacher, seed) shares: the teachers, the training pool of teacher samples
    (TrigFlow scale), the evaluation noise and reference draws, and the teacher baselines against them."""

    teacher: nn.Module
    teacher_net: nn.Module
    pool: Tensor
    eps: Tensor
    ref: Tensor
    baselines: dict
    seconds: float = 0.0  # wall and CPU time of building it (teacher training, pool, baselines)
    cpu_seconds: float = 0.0


def make_bench(kind: str, seed: int, scale: Scale) -> Bench:
    """Teachers, a 64-step teacher-sample pool, and ED / sliced W2 / precision of the Euler teacher at 1, 4, 8, 64."""
    start, cpu_start = time.perf_counter(), time.process_time()
    teacher, teacher_net = make_teacher(kind, seed, scale)
    g = torch.Generator().manual_seed(10_000 + seed)

    def teacher_samples(steps: int, n: int) -> Tensor:
        x1 = torch.randn(n, 2, generator=g)
        return sample_euler(lambda x, s: teacher.flow_model(x, s), x1, get_flow_timesteps(steps))

    pool = SIGMA_D * teacher_samples(64, scale.pool)
    n = scale.n_eval
    eps, ref, ref2 = torch.randn(n, 2, generator=g), ring_samples(n, g), ring_samples(n, g)
    baselines = {"noise_floor": energy_distance(ref2, ref)}
    for k in (1, 4, 8, 64):
        x = teacher_samples(k, n)
        baselines[f"ed_teacher_{k}"] = energy_distance(x, ref)
        baselines[f"sw2_teacher_{k}"] = sliced_w2(x, ref, torch.Generator().manual_seed(seed))
        baselines[f"precision_teacher_{k}"] = mode_masses(x).sum().item()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return Bench(teacher, teacher_net, pool, eps, ref, baselines, seconds, cpu_seconds)


def run(name: str, seed: int, teacher_kind: str, scale: Scale | None = None, benches: dict | None = None) -> dict:
    """Train one method on one teacher and seed; returns the JSON record (notes sec. 5 pass criteria).
    `benches` caches the Bench per (kind, seed) across runs. `seconds` and `cpu_seconds` are those of a standalone
    run: this run's training and evaluation plus building its Bench, counted also where the Bench is shared."""
    scale = scale or Scale()
    benches = {} if benches is None else benches
    if (teacher_kind, seed) not in benches:
        benches[teacher_kind, seed] = make_bench(teacher_kind, seed, scale)
    bench = benches[teacher_kind, seed]
    start, cpu_start = time.perf_counter(), time.process_time()
    setting = SETTINGS[name]
    method = METHODS[name](**setting.kwargs)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    models = build_models(method, bench.teacher, bench.teacher_net)
    method.bind(models)
    optimizers = make_optimizers(method, models, setting.lrs)
    base_lrs = {role: opt.param_groups[0]["lr"] for role, opt in optimizers.items()}
    ema = copy.deepcopy(models["student"]).requires_grad_(False)
    steps = scale.train_steps if scale.train_steps is not None else setting.steps
    batch_size = max(setting.batch, method.min_batch)
    skipped = 0.0
    for step in range(steps):
        for role, opt in optimizers.items():  # cosine decay to zero over the run
            opt.param_groups[0]["lr"] = base_lrs[role] * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(len(bench.pool), (batch_size,), generator=g)
        skipped += train_step(method, optimizers, {"x0": bench.pool[idx]}, step).get("skipped", 0.0)
        update_emas(method, models)
        ema_update(ema, models["student"], setting.ema_decay)

    student = student_sampler(name, method, ema, setting.student_steps)(bench.eps)
    masses = mode_masses(student)
    baseline = 8 if setting.student_steps > 1 else 4
    b = bench.baselines
    record = {
        "method": name,
        "teacher": teacher_kind,
        "seed": seed,
        "train_steps": steps,
        "student_steps": setting.student_steps,
        "baseline_steps": baseline,
        "ed_student": energy_distance(student, bench.ref),
        **{f"ed_teacher_{k}": b[f"ed_teacher_{k}"] for k in (1, 4, 8, 64)},
        "noise_floor": b["noise_floor"],
        "sw2_student": sliced_w2(student, bench.ref, torch.Generator().manual_seed(seed)),
        **{f"sw2_teacher_{k}": b[f"sw2_teacher_{k}"] for k in (1, 4, 8, 64)},
        "modes_covered": int((masses >= 1 / (4 * K)).sum()),
        "mode_mass_min": masses.min().item(),
        "mode_mass_max": masses.max().item(),
        "precision": masses.sum().item(),
        **{f"precision_teacher_{k}": b[f"precision_teacher_{k}"] for k in (1, baseline)},
        "skipped_updates": int(skipped),
    }
    record["teacher_ok"] = record["ed_teacher_64"] <= 3 * record["noise_floor"]
    record["sw2_agrees"] = record["sw2_student"] <= record[f"sw2_teacher_{baseline}"]
    record["pass"] = bool(
        record["ed_student"] <= record[f"ed_teacher_{baseline}"]
        and record["ed_student"] <= 0.1 * record["ed_teacher_1"]
        and bool(((masses >= 0.5 / K) & (masses <= 2 / K)).all())
        and record["precision"] >= 0.9
    )
    record["seconds"] = round(time.perf_counter() - start + bench.seconds, 1)
    record["cpu_seconds"] = round(time.process_time() - cpu_start + bench.cpu_seconds, 1)
    record["bench_cpu_seconds"] = round(bench.cpu_seconds, 1)
    return record


# ---- the results table -------------------------------------------------------------------------------------------


def markdown_table(records: list[dict]) -> str:
    """The BENCHMARKS.md section: one row per run, then the pass count per method and teacher."""
    lines = [
        "| method | teacher | seed | steps | ED² student | ED² teacher@1 | ED² teacher@4 (@8 for LCM) "
        "| ED² teacher@64 | noise floor | modes | mass min/max | precision student / teacher@4 (@8) "
        "| SW2 student / teacher@4 (@8) | pass | wall s (CPU s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        k = r["baseline_steps"]
        lines.append(
            f"| {r['method']} | {r['teacher']} | {r['seed']} | {r['student_steps']} | {r['ed_student']:.4f} "
            f"| {r['ed_teacher_1']:.3f} | {r[f'ed_teacher_{k}']:.4f} | {r['ed_teacher_64']:.4f} "
            f"| {r['noise_floor']:.4f} | {r['modes_covered']}/8 | {r['mode_mass_min']:.3f}/{r['mode_mass_max']:.3f} "
            f"| {r['precision']:.3f} / {r[f'precision_teacher_{k}']:.3f} "
            f"| {r['sw2_student']:.3f} / {r[f'sw2_teacher_{k}']:.3f} "
            f"| {'yes' if r['pass'] else 'no'} | {r['seconds']} ({r['cpu_seconds']}) |"
        )
    kinds = sorted({r["teacher"] for r in records})
    lines += ["", "| method | " + " | ".join(f"passed ({k})" for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
    for name in dict.fromkeys(r["method"] for r in records):
        counts = []
        for kind in kinds:
            runs = [r for r in records if r["method"] == name and r["teacher"] == kind]
            counts.append(f"{sum(r['pass'] for r in runs)}/{len(runs)}")
        lines.append(f"| {name} | " + " | ".join(counts) + " |")
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace (or append) the text between the toy markers in `path`."""
    text = path.read_text() if path.exists() else ""
    section = f"{MARKERS[0]}\n{body}\n{MARKERS[1]}"
    if MARKERS[0] in text and MARKERS[1] in text:
        head, rest = text.split(MARKERS[0], 1)
        text = head + section + rest.split(MARKERS[1], 1)[1]
    else:
        text = (text.rstrip() + "\n\n" if text else "") + section + "\n"
    path.write_text(text)


def merge_records(old: list[dict], new: list[dict]) -> list[dict]:
    """Rows of `new` replace rows of `old` with the same (method, teacher, seed); ordered by teacher, seed, method."""
    rows = {(r["method"], r["teacher"], r["seed"]): r for r in [*old, *new]}
    rank = {name: i for i, name in enumerate(DISTILLERS)}
    return sorted(rows.values(), key=lambda r: (TEACHERS.index(r["teacher"]), r["seed"], rank.get(r["method"], 99)))


def read_records(path: Path) -> list[dict]:
    """The JSON-lines records file ([] when it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_group(group: tuple[str, int, Scale, tuple[str, ...]]) -> list[dict]:
    """The given methods on one (teacher, seed), sharing the teacher; a worker process of `--all --jobs N`."""
    teacher_kind, seed, scale, methods = group
    torch.set_num_threads(1)
    benches: dict = {}
    return [run(name, seed, teacher_kind, scale, benches) for name in methods]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=sorted(DISTILLERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", choices=("gmm", "mlp"), default="gmm")
    parser.add_argument("--json", action="store_true", help="print the record as one JSON line")
    parser.add_argument("--all", action="store_true", help="every method x seeds 0, 1, 2 x both teachers")
    parser.add_argument("--markdown", type=Path, help="with --all: write the table between the toy markers")
    parser.add_argument(
        "--methods", help="with --all: a comma-separated subset of the methods (the rest keep their --records rows)"
    )
    parser.add_argument(
        "--records",
        type=Path,
        help="with --all: JSON-lines file of all runs; new rows replace their old ones and "
        "--markdown is written from the whole file",
    )
    parser.add_argument("--jobs", type=int, default=1, help="with --all: worker processes, one (teacher, seed) each")
    parser.add_argument("--smoke", action="store_true", help="a few steps at small sizes (plumbing only)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    scale = SMOKE if args.smoke else Scale()
    if args.all:
        methods = tuple(args.methods.split(",")) if args.methods else tuple(DISTILLERS)
        unknown = sorted(set(methods) - set(DISTILLERS))
        if unknown:
            parser.error(f"unknown methods {unknown}; choose from {DISTILLERS}")
        groups = [(kind, seed, scale, methods) for kind in TEACHERS for seed in SEEDS]
        records = []
        with ProcessPoolExecutor(args.jobs) as pool:
            for group_records in pool.map(run_group, groups):
                for record in group_records:
                    print(json.dumps(record), flush=True)
                records += group_records
        table = records
        if args.records:
            table = merge_records(read_records(args.records), records)
            args.records.parent.mkdir(parents=True, exist_ok=True)
            args.records.write_text("".join(json.dumps(r) + "\n" for r in table))
        if args.markdown:
            write_section(args.markdown, markdown_table(table))
        summary = {"runs": len(records), "passed": sum(r["pass"] for r in records)}
        summary.update(table_runs=len(table), table_passed=sum(r["pass"] for r in table))
        print(json.dumps(summary))
        return
    if args.method is None:
        parser.error("--method is required without --all")
    record = run(args.method, args.seed, args.teacher, scale)
    print(json.dumps(record) if args.json else markdown_table([record]))


if __name__ == "__main__":
    main()
