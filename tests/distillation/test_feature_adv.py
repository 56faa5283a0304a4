"""ADD's feature-network discriminator: the pretrained EfficientNet-Lite1 is real and stays frozen, its caption-
conditioned heads tell colour that fits the caption from colour that does not, and sCM + LADD trains with it."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from distillation.config import load_config
from distillation.feature_net import VARIANTS, build_feature_net, load_efficientnet_lite
from distillation.heads import FeatureNetHeads
from distillation.methods.feature_adv import FeatureAdversary, caption_vector
from distillation.trainer import Trainer
from pipelines.parameterization import SIGMA_D
from pipelines.tiny import JiTConfig, SketchJiT, save_tiny
from tests.distillation.test_trainer import set_up
from tests.fakes import write_sketch_pairs

CHEETAH, LION = 293, 291  # ImageNet classes


def test_lite1_is_the_pretrained_imagenet_classifier():
    from tests.distillation.test_metrics import GRADIO_IMAGES

    net = load_efficientnet_lite("efficientnet_lite1")
    photos = [np.array(Image.open(GRADIO_IMAGES / name).convert("RGB")) for name in ("cheetah.jpg", "lion.jpg")]
    resize = torch.nn.functional.interpolate
    images = [torch.from_numpy(photo).permute(2, 0, 1)[None].float() for photo in photos]
    images = torch.cat([resize(image, (240, 240), mode="bilinear", antialias=True) for image in images]) / 127.5 - 1
    with torch.no_grad():
        top1 = net(images).argmax(dim=-1).tolist()
    assert top1 == [CHEETAH, LION]  # the photos Gradio ships (a random network would not name both)


def test_feature_net_stays_frozen_in_eval_mode_inside_a_training_role():
    net = build_feature_net("efficientnet_lite1", resolution=64)
    net.train()  # what the trainer does to every role
    assert not net.training and not any(m.training for m in net.modules())
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    maps = net(torch.rand(2, 3, 96, 96) * 2 - 1)
    assert [m.shape[1] for m in maps] == net.channels == [40, 112, 320]
    assert [m.shape[-1] for m in maps] == [8, 4, 2]  # strides 8, 16, 32 of 64 px
    assert all(torch.equal(stats[k], v) for k, v in net.state_dict().items() if "running" in k)
    assert not any(p.requires_grad for p in net.parameters())


def test_generator_gradient_reaches_the_pictures_and_discriminator_gradient_only_the_heads():
    adversary = FeatureAdversary(network="efficientnet_lite1", resolution=64, text_dim=384)
    roles = adversary.roles()
    assert roles["feature_heads"].steps_with == "heads" and not roles["feature_net"].trainable
    adversary.bind({name: spec.build() for name, spec in roles.items()})
    cond = {"text": torch.randn(2, 384), "sketch": torch.rand(2, 1, 64, 64)}
    fake = (SIGMA_D * torch.tanh(torch.randn(2, 3, 64, 64))).requires_grad_()
    adversary.generator_loss(fake, cond).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    heads = adversary.models["feature_heads"]
    heads.zero_grad()
    fake.grad = None
    d = adversary.discriminator_loss(SIGMA_D * torch.rand(2, 3, 64, 64), fake, cond)
    d["loss"].backward()
    assert fake.grad is None and all(p.grad is not None for p in heads.parameters())
    assert all(p.grad is None for p in adversary.models["feature_net"].parameters())
    with pytest.raises(ValueError, match="RGB pictures, not 4-channel latents"):
        adversary.discriminate(torch.zeros(1, 4, 8, 8), cond)


def test_caption_vector_pools_token_sequences_and_is_none_without_text():
    assert caption_vector({"text": torch.ones(2, 5, 8)}).shape == (2, 8)
    assert caption_vector({"sketch": torch.ones(1)}) is None and caption_vector(None) is None


@pytest.mark.parametrize("text_dim, separates", [(16, True), (0, False)], ids=["projection", "unconditional"])
def test_projection_heads_learn_whether_the_colour_fits_the_caption(text_dim, separates):
    """Real: red pictures captioned "red", blue ones "blue"; fake: the same pictures with the captions swapped. Only
    heads that see the caption can tell them apart (an unconditional head sees one picture distribution)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = build_feature_net("efficientnet_lite1", stages=(2,), resolution=64)
    colour = torch.arange(32) % 2  # 0 red, 1 blue
    rgb = torch.tensor([(220.0, 40.0, 40.0), (40.0, 80.0, 220.0)])[colour][:, :, None, None] / 127.5 - 1
    with torch.no_grad():  # the frozen network's maps of 32 noisy flat pictures, computed once
        (maps,) = net((rgb + 0.05 * torch.randn(32, 3, 64, 64, generator=g)).clamp(-1, 1))
    heads = FeatureNetHeads(net.channels, hidden=32, text_dim=text_dim)
    words = torch.randn(2, 16, generator=g)  # caption embeddings of "red" and "blue"
    optimizer = torch.optim.Adam(heads.parameters(), lr=2e-3)

    def logits(captions: torch.Tensor) -> torch.Tensor:
        return heads([maps], words[captions] if text_dim else None).mean(dim=1)

    for _ in range(60):
        loss = torch.relu(1 - logits(colour)).mean() + torch.relu(1 + logits(1 - colour)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = 0.5 * ((logits(colour) > 0).float().mean() + (logits(1 - colour) < 0).float().mean())
    assert (accuracy > 0.9) == separates, accuracy


def tiny_jit_teacher(folder) -> str:
    torch.manual_seed(0)
    config = JiTConfig(resolution=16, patch=4, overlap=2, width=32, depth=3, heads=2, bottleneck=16, refine_channels=4)
    save_tiny(SketchJiT(config), folder, extra={"kind": "flow"})
    return str(folder)


def test_scm_ladd_with_the_feature_network_trains_its_heads_with_the_discriminator(tmp_path):
    """method.feature_net = efficientnet_lite1 on a SketchJiT teacher: one step moves the student, sCM's log-variance,
    LADD's heads and the feature heads (stepped by the heads' optimizer at role_lr.heads); the feature network and
    the teacher stay put."""
    root, _, _ = write_sketch_pairs(tmp_path / "pairs")
    teacher = tiny_jit_teacher(tmp_path / "teacher")
    overrides = [
        "--teacher.kind=sketch_tiny",
        "--teacher.controlnet=false",
        "--teacher.random=",
        f"--teacher.path={teacher}",
    ]
    overrides += ["--data.kind=sketch_pairs", f"--data.path={root}", "--data.guidance=[2.0]"]
    overrides += ["--method.feature_net=efficientnet_lite1", "--method.feature_resolution=64"]
    trainer = set_up(tmp_path / "run", "tiny_scm_ladd.toml", *overrides)
    assert {"feature_net", "feature_heads"} <= set(trainer.roles)
    assert trainer.method.ladd.feature_layers == ("flow_model.blocks.0", "flow_model.blocks.1", "flow_model.blocks.2")
    heads_params = {id(p) for p in trainer.opt_params["heads"]}
    assert {id(p) for p in trainer.roles["feature_heads"].params.values()} <= heads_params
    lrs = {role: optimizer.param_groups[0]["lr"] for role, optimizer in trainer.optimizers.items()}
    assert lrs["heads"] == 1e-3 and lrs["student"] == 1e-4  # TTUR: the discriminator's own learning rate
    frozen = {n: p.detach().clone() for n, p in trainer.roles["feature_net"].module.named_parameters()}
    before = {n: p.detach().clone() for n, p in trainer.roles["feature_heads"].params.items()}
    logs = trainer.train_step()
    assert all(math.isfinite(v) for v in logs.values()), logs
    assert "student/feature_adv_loss" in logs and "heads/feature_d_acc" in logs
    after = trainer.roles["feature_heads"].params
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert all(torch.equal(frozen[n], p) for n, p in trainer.roles["feature_net"].module.named_parameters())


def test_feature_adversary_refuses_lite0_the_metric_network():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        FeatureAdversary(network="efficientnet_lite0")
    assert "efficientnet_lite0" not in VARIANTS  # Lite0 is bench.metrics' FD network only


def test_paired_ladd_with_the_feature_network_judges_the_folders_pictures_as_real(tmp_path):
    """The fine-tune recipe with method.feature_net: one step on a 16 px stand-in moves the student and the feature
    heads (with the discriminator's optimizer), the frozen feature network stays put, and the feature heads' "real"
    side is the batch's own pictures (the folder's), not teacher samples."""
    from distillation.jobs import FINETUNE_PRESET
    from pipelines.tiny import save_tiny
    from tests.distillation.test_data_folders import image_folder
    from tests.distillation.test_jobs_store import tiny_net

    teacher, start = tmp_path / "teacher", tmp_path / "start"
    save_tiny(tiny_net(seed=0), teacher)
    save_tiny(tiny_net(seed=1), start, extra={"kind": "trigflow"})
    overrides = [
        f"--teacher.path={teacher}",
        f"--student.init={start}",
        f"--data.path={image_folder(tmp_path / 'my pictures')}",
        f"--data.cache={tmp_path / 'cache'}",
        "--batch_size=2",
        "--method.feature_net=efficientnet_lite1",
        "--method.feature_resolution=64",
    ]
    trainer = Trainer(load_config(FINETUNE_PRESET, overrides), tmp_path / "run", progress="json")
    trainer.setup()
    assert {"feature_net", "feature_heads"} <= set(trainer.roles)
    heads_params = {id(p) for p in trainer.opt_params["heads"]}
    assert {id(p) for p in trainer.roles["feature_heads"].params.values()} <= heads_params
    seen = []
    real = trainer.method.feature.discriminator_loss
    trainer.method.feature.discriminator_loss = lambda x0, fake, cond: seen.append(x0) or real(x0, fake, cond)
    frozen = {n: p.detach().clone() for n, p in trainer.roles["feature_net"].module.named_parameters()}
    before = {n: p.detach().clone() for n, p in trainer.roles["feature_heads"].params.items()}
    student = {n: p.detach().clone() for n, p in trainer.roles["student"].params.items()}
    logs = trainer.train_step()
    assert all(math.isfinite(v) for v in logs.values()), logs
    assert "student/feature_adv_loss" in logs and "heads/feature_d_acc" in logs
    assert any(not torch.equal(before[n], p) for n, p in trainer.roles["feature_heads"].params.items())
    assert any(not torch.equal(student[n], p) for n, p in trainer.roles["student"].params.items())
    assert all(torch.equal(frozen[n], p) for n, p in trainer.roles["feature_net"].module.named_parameters())
    assert len(seen) == 1 and seen[0].shape[0] == 2 and seen[0].abs().max() <= SIGMA_D + 1e-6  # folder pictures
