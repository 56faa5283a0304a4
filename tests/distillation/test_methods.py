"""Method-contract invariants: zero gradients at the fixed points, frozen roles stay frozen, trainable roles move."""

import copy

import pytest
import torch

from distillation.methods import DMD2, LADD, LCM, METHODS, SCM, SCMLADD, PairedLADD, TwinFlow
from distillation.methods.base import teacher_F
from distillation.methods.lcm import lcm_consistency
from distillation.toy import (
    FEATURE_LAYERS,
    FlowMLP,
    build_models,
    make_optimizers,
    ring_samples,
    train_step,
    update_emas,
)
from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow

HIDDEN = 32
LADD_KWARGS = dict(feature_layers=FEATURE_LAYERS, feature_channels=(HIDDEN,) * 3, head_kernel_size=1)


def make_method(name):
    kwargs = LADD_KWARGS if name in ("ladd", "scm_ladd", "paired_ladd") else {}
    return METHODS[name](**kwargs)


@pytest.fixture
def teacher():
    torch.manual_seed(0)
    return FlowAsTrigFlow(FlowMLP(hidden=HIDDEN, depth=3, input_scale=1.0)).requires_grad_(False)


@pytest.fixture
def batch():
    return {"x0": SIGMA_D * ring_samples(16, torch.Generator().manual_seed(0))}


def bound(method, teacher):
    models = build_models(method, teacher, teacher)
    method.bind(models)
    return models


def grads(module):
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in module.parameters()])


def test_scm_gradient_vanishes_when_the_student_is_the_teacher(teacher, batch):
    """r = 0 (start of the tangent warm-up), no CFG: g = -cos^2 t (sigma_d F^- - dx/dt) = 0 and F_theta = F^-."""
    method = SCM(tangent_warmup=100)
    models = bound(method, teacher)
    torch.manual_seed(1)
    method.loss("student", batch, step=0)["loss"].backward()
    assert grads(models["student"]).abs().max() < 1e-6
    assert grads(models["logvar"]).abs().max() > 1e-3  # u_phi still learns the loss scale
    models["student"].zero_grad()
    torch.manual_seed(1)
    out = method.loss("student", batch, step=100)  # r = 1: the Jacobian term makes a target
    out["loss"].backward()
    assert out["g_norm"] > 1e-3 and grads(models["student"]).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["scm", "scm_ladd"])
def test_fixed_weight_scm_has_no_logvar(name, teacher, batch):
    """adaptive_weighting=False (the toy's setting, rCM's choice): no u_phi role; the loss is the prior-weighted MSE"""
    method = METHODS[name](**(LADD_KWARGS if name == "scm_ladd" else {}), adaptive_weighting=False)
    assert "logvar" not in method.roles()
    bound(method, teacher)
    out = method.loss("student", batch, step=10**6)
    key = "loss" if name == "scm" else "scm_loss"
    torch.testing.assert_close(out[key].detach(), out["loss_no_logvar"])


def test_scm_target_moves_with_guidance(teacher, batch):
    """CFG F_u + w (F_c - F_u): w = 1 is the conditional teacher; another w makes a non-zero target."""
    x, t = batch["x0"], torch.full((16,), 0.7)
    cond, uncond = torch.ones(16, 1), torch.zeros(16, 1)

    class Conditional(torch.nn.Module):
        def forward(self, x, t, cond):
            return teacher(x, t) + cond

    guided = {"cond": cond, "uncond": uncond, "guidance": torch.full((16,), 1.0)}
    torch.testing.assert_close(teacher_F(Conditional(), x, t, guided), teacher(x, t) + 1)
    guided["guidance"] = torch.full((16,), 4.5)
    torch.testing.assert_close(teacher_F(Conditional(), x, t, guided), teacher(x, t) + 4.5)


def test_ladd_leaves_the_teacher_untouched_and_moves_the_heads(teacher, batch):
    method = LADD(**LADD_KWARGS)
    models = bound(method, teacher)
    before = {name: copy.deepcopy(m.state_dict()) for name, m in models.items()}
    optimizers = make_optimizers(method, models, {"default": 1e-3})
    for step in range(2):
        logs = train_step(method, optimizers, batch, step)
    assert {"student/loss", "heads/loss", "heads/d_acc"} <= set(logs)
    for key, value in models["backbone"].state_dict().items():
        assert torch.equal(value, before["backbone"][key]), key
    assert models["backbone"] is teacher
    assert any(not torch.equal(v, before["heads"][k]) for k, v in models["heads"].state_dict().items())


def test_ladd_hinge_loss_falls_on_separable_data(teacher):
    """Real samples far from the student's (shifted by 4), little re-noising: the heads learn to tell them apart."""
    method = LADD(**LADD_KWARGS, max_time_prob=1.0, p_mean_d=-2.0)
    models = bound(method, teacher)
    optimizers = make_optimizers(method, models, {"default": 1e-3})
    batch = {"x0": SIGMA_D * (ring_samples(64, torch.Generator().manual_seed(0)) + torch.tensor([4.0, 0.0]))}
    torch.manual_seed(0)
    first = method.loss("heads", batch, 0)["loss"].item()
    for step in range(30):
        optimizers["heads"].zero_grad()
        method.loss("heads", batch, step)["loss"].backward()
        optimizers["heads"].step()
    torch.manual_seed(0)
    last = method.loss("heads", batch, 0)
    assert last["loss"].item() < first - 0.05 and last["d_acc"] > 0.6


def test_dmd2_gradient_vanishes_when_fake_equals_real(teacher, batch):
    method = DMD2()
    models = bound(method, teacher)
    out = method.loss("student", batch, 0)
    out["loss"].backward()
    assert out["dm_grad_norm"] == 0 and grads(models["student"]).abs().max() == 0
    with torch.no_grad():
        for p in models["fake"].parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = method.loss("student", batch, 0)
    out["loss"].backward()
    assert grads(models["student"]).abs().max() > 0


def test_dmd2_two_time_scale_plan_and_backward_simulation(teacher, batch):
    method = DMD2(fake_updates=5, num_student_steps=4)
    bound(method, teacher)
    assert [method.update_plan(s) for s in range(6)] == [["student", "fake"]] + [["fake"]] * 4 + [["student", "fake"]]
    torch.manual_seed(3)
    a = method.generate(batch)
    torch.manual_seed(3)
    b = method.generate({"x0": batch["x0"] * 100 + 7})  # student inputs never read the data values
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_dmd2_gan_term_trains_the_classifier_with_the_fake_score(teacher, batch):
    """With GAN layers: a "cls" role stepped with the fake score; the student's loss adds softplus(-D) through the
    fake score's features (the fake score itself is not moved by the student's update)."""
    method = DMD2(gan_feature_layers=FEATURE_LAYERS, gan_feature_channels=(HIDDEN,) * 3, gen_cls_weight=1.0)
    models = bound(method, teacher)
    assert method.roles()["cls"].steps_with == "fake" and "cls" not in DMD2().roles()
    out = method.loss("student", batch, 0)
    out["loss"].backward()
    assert out["gen_cls_loss"] > 0 and grads(models["student"]).abs().max() > 0  # DM grad is 0 here: GAN only
    optimizers = make_optimizers(method, models, {"default": 1e-3})
    assert set(optimizers) == {"student", "fake"}
    before = copy.deepcopy(models["cls"].state_dict())
    logs = train_step(method, optimizers, batch, step=1)  # fake (+ cls) only
    assert set(logs) >= {"fake/loss", "fake/cls_loss", "fake/denoise_loss"}
    assert any(not torch.equal(p, before[k]) for k, p in models["cls"].named_parameters())


def test_lcm_consistency_function_is_identity_at_s0(teacher):
    x_s = torch.randn(8, 2)
    torch.testing.assert_close(lcm_consistency(teacher, x_s, torch.zeros(8)), x_s, rtol=0, atol=1e-6)


def test_paired_ladd_without_its_l1_term_is_ladd(teacher, batch):
    """recon_weight = 0: the generator loss is LADD's, draw for draw (same heads, same random state; the heads in
    eval mode, so their spectral norm's power iteration does not move between the two calls)."""
    ladd, paired = LADD(**LADD_KWARGS), PairedLADD(**LADD_KWARGS, recon_weight=0.0, max_time_prob=0.5, p_mean_d=-0.6)
    models = bound(ladd, teacher)
    models["heads"].eval()
    paired.bind(models)
    torch.manual_seed(3)
    expected = ladd.loss("student", batch, 0)["loss"]
    torch.manual_seed(3)
    got = paired.loss("student", batch, 0)
    assert torch.allclose(got["loss"], expected) and got["recon_loss"] > 0


def test_paired_ladd_l1_term_pulls_the_one_step_picture_to_its_pair(teacher):
    """Targets shifted away from the teacher's ring: the L1 term alone (adv_weight 0) moves the student's 1-step
    pictures (t = pi/2) towards them, and its loss falls."""
    method = PairedLADD(**LADD_KWARGS, adv_weight=0.0, max_time_prob=1.0)
    models = bound(method, teacher)
    optimizers = make_optimizers(method, models, {"default": 1e-3})
    batch = {"x0": SIGMA_D * (ring_samples(32, torch.Generator().manual_seed(0)) + torch.tensor([2.0, 0.0]))}
    torch.manual_seed(0)
    first = method.loss("student", batch, 0)["recon_loss"].item()
    for step in range(40):
        optimizers["student"].zero_grad()
        method.loss("student", batch, step)["loss"].backward()
        optimizers["student"].step()
    torch.manual_seed(0)
    assert method.loss("student", batch, 0)["recon_loss"].item() < 0.85 * first  # measured: 0.78


def test_paired_l1_on_pooled_pictures_leaves_texture_to_the_adversarial_term():
    from distillation.methods.paired_ladd import paired_l1

    x0 = torch.rand(2, 3, 16, 16)
    grain = 0.2 * torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(8, 8)  # zero mean in every 2x2 block
    assert paired_l1(x0 + grain, x0).item() == pytest.approx(0.2, abs=1e-6)
    assert paired_l1(x0 + grain, x0, pool=4).item() == pytest.approx(0.0, abs=1e-6)
    assert paired_l1(x0 + 0.1, x0, pool=4).item() == pytest.approx(0.1, abs=1e-6)  # a colour shift still costs


def test_minimum_batches():
    assert LADD(**LADD_KWARGS).min_batch == 2 and SCMLADD(**LADD_KWARGS).min_batch == 2
    assert TwinFlow().min_batch == 4 and SCM().min_batch == 1 and LCM().min_batch == 1


# guidance distillation needs a conditional batch with CFG scales (its own tests: test_guidance.py)
@pytest.mark.parametrize("name", sorted(set(METHODS) - {"guidance"}))
def test_only_declared_trainable_parameters_change(name, teacher, batch):
    """Six plan steps (DMD2's student first moves once the fake score has left the teacher; sCM's once r > 0)."""
    method = make_method(name)
    models = bound(method, teacher)
    specs = method.roles()
    before = {n: copy.deepcopy(m.state_dict()) for n, m in models.items()}
    optimizers = make_optimizers(method, models, {"default": 1e-3})
    for step in range(6):
        logs = train_step(method, optimizers, batch, step)
        assert logs and all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    for role, module in models.items():
        changed = any(not torch.equal(p, before[role][k]) for k, p in module.named_parameters())
        assert changed == specs[role].trainable, (role, changed)
        if not specs[role].trainable:
            assert all(not p.requires_grad for p in module.parameters())


def test_bind_reports_missing_roles(teacher):
    with pytest.raises(ValueError, match="needs roles"):
        DMD2().bind({"student": teacher})


def test_lcm_target_is_an_ema_of_the_student(teacher, batch):
    """The frozen `ema_of` role is moved only by the loop's EMA update, towards the student."""
    method = LCM(target_ema=0.5)
    models = bound(method, teacher)
    assert method.roles()["target"].ema_of == "student" and models["target"] is not teacher
    optimizers = make_optimizers(method, models, {"default": 1e-2})
    train_step(method, optimizers, batch, step=0)
    student, target = models["student"].state_dict(), models["target"].state_dict()
    before = {k: v.clone() for k, v in target.items()}
    update_emas(method, models)
    for key, value in target.items():
        torch.testing.assert_close(value, 0.5 * before[key] + 0.5 * student[key])
    assert any(not torch.equal(target[k], before[k]) for k in target)


def test_lcm_target_comes_from_the_ema_target_network(teacher, batch):
    """With target_ema > 0 the consistency target is f_target(x_lo, s_lo), not the online student: changing only
    the target network changes the loss (and with target_ema = 0 there is no target role to change)."""
    method = LCM(target_ema=0.95)
    models = bound(method, teacher)

    def loss():
        torch.manual_seed(3)
        return method.loss("student", batch, step=0)["loss"].item()

    before = loss()
    with torch.no_grad():
        for p in models["target"].parameters():
            p.mul_(0.5)
    assert loss() != pytest.approx(before, rel=1e-3)
    assert all(not p.requires_grad for p in models["target"].parameters())
    assert "target" not in LCM(target_ema=0.0).roles()


def test_disc_heads_read_conv_maps_as_raster_order_tokens():
    from distillation.heads import DiscHeads

    torch.manual_seed(0)
    heads = DiscHeads([6], hidden=8, kernel_size=3)
    maps = torch.randn(2, 6, 3, 4)
    tokens = maps.flatten(2).transpose(1, 2)  # (b, h*w, c)
    assert heads([maps]).shape == (2, 12)
    torch.testing.assert_close(heads([maps]), heads([tokens]))


def test_texture_term_measures_grain_not_outlines_and_not_where_the_grain_falls():
    from distillation.methods.paired_ladd import band_spreads, texture_l1

    g = torch.Generator().manual_seed(0)
    flat = torch.full((2, 3, 64, 64), 0.8)
    outlined = flat.clone()
    outlined[:, :, 20, 8:56] = -1.0  # one dark line: a few large band values
    grain = 0.1 * torch.randn(2, 3, 64, 64, generator=g)
    other_grain = 0.1 * torch.randn(2, 3, 64, 64, generator=g)
    assert band_spreads(flat, 3).abs().max() < 1e-6
    assert band_spreads(outlined, 3)[:, 0].max() < 0.01 < band_spreads(flat + grain, 3)[:, 0].min()
    # the same amount of grain elsewhere costs almost nothing; grain against a smooth picture costs a lot
    same = texture_l1(outlined + other_grain, outlined + grain).item()
    smooth = texture_l1(outlined, outlined + grain).item()
    assert same < 0.1 * smooth
    x = (outlined + 1e-3 * torch.randn(2, 3, 64, 64, generator=g)).requires_grad_(True)  # nearly smooth
    texture_l1(x, outlined + grain).backward()
    assert (x.grad != 0).float().mean() > 0.5  # most pixels learn, not one per channel as with a median
