"""Guidance distillation: one conditional pass of the student learns the teacher's classifier-free-guided output."""

import pytest
import torch

from distillation.methods import METHODS
from distillation.methods.guidance import GuidanceDistillation
from pipelines.parameterization import SIGMA_D


class Linear(torch.nn.Module):
    """F(x, t, c) = a x + b c: the condition moves the output by b per unit (the teacher: a = 0.5, b = 1)."""

    def __init__(self, a: float, b: float, trainable: bool):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a), requires_grad=trainable)
        self.b = torch.nn.Parameter(torch.tensor(b), requires_grad=trainable)

    def forward(self, x, t, cond):
        return self.a * x + self.b * cond[:, :, None, None]


def batch(n: int = 32, w: float = 4.0) -> dict:
    cond = torch.randn(n, 3)
    return {
        "x0": SIGMA_D * torch.randn(n, 3, 2, 2),
        "cond": cond,
        "uncond": torch.zeros(1, 3).expand(n, 3),
        "guidance": torch.full((n,), w),
    }


def test_the_student_learns_the_guided_output_in_one_pass():
    """Guided teacher: F_u + w (F_c - F_u) = 0.5 x + w c, so a copy of the teacher (b = 1) must learn b = w = 4."""
    torch.manual_seed(0)
    method = GuidanceDistillation()
    student = Linear(0.5, 1.0, trainable=True)  # starts as the teacher's copy: the unguided network
    method.bind({"student": student, "teacher": Linear(0.5, 1.0, trainable=False)})
    optimizer = torch.optim.Adam(student.parameters(), lr=0.05)
    for step in range(300):
        loss = method.loss("student", batch(), step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert student.b.item() == pytest.approx(4.0, abs=0.05) and student.a.item() == pytest.approx(0.5, abs=0.05)


def test_a_batch_without_guidance_is_refused_in_words():
    method = GuidanceDistillation()
    method.bind({"student": Linear(0.5, 1.0, True), "teacher": Linear(0.5, 1.0, False)})
    plain = {k: v for k, v in batch().items() if k != "guidance"}
    with pytest.raises(ValueError, match="needs the data's guidance scales"):
        method.loss("student", plain, 0)


def test_it_is_a_flow_method_the_cli_knows():
    assert METHODS["guidance"] is GuidanceDistillation and GuidanceDistillation.sampler == "flow"
