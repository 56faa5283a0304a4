"""Flow-matching teacher pre-training: condition dropout, exact rectified-flow objective, it learns."""

import torch

from distillation.methods.flow_matching import FlowMatching, drop_condition
from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow


class Velocity(torch.nn.Module):
    """v(x_s, s, cond) = a * x_s + b: enough to learn a point mass's flow."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(()))
        self.b = torch.nn.Parameter(torch.zeros(3))

    def forward(self, x, s, cond):
        return self.a * x + self.b[None, :, None, None]


def test_drop_condition_mixes_per_sample_and_keeps_unlisted_keys():
    cond = {"text": torch.ones(4, 2), "sketch": torch.ones(4, 1, 2, 2)}
    keep = torch.tensor([True, False, True, False])
    mixed = drop_condition(cond, {"text": torch.zeros(1, 2)}, keep)
    assert mixed["text"][:, 0].tolist() == [1, 0, 1, 0]
    assert torch.equal(mixed["sketch"], cond["sketch"])


def test_loss_is_rectified_flow_in_flow_units():
    """For v = eps - x0 exactly (a model that knows x0 and sees eps), the loss is zero; a wrong v gives its MSE."""
    torch.manual_seed(0)
    x0 = torch.full((2, 3, 4, 4), 0.3)

    class Oracle(torch.nn.Module):
        def forward(self, x_s, s, cond):
            s = s[:, None, None, None]
            eps = (x_s - (1 - s) * x0) / s
            return eps - x0

    method = FlowMatching(p_uncond=0.0)
    method.bind({"student": FlowAsTrigFlow(Oracle())})
    assert method.loss("student", {"x0": SIGMA_D * x0}, 0)["loss"].item() < 1e-8


def test_a_point_mass_is_learned():
    torch.manual_seed(0)
    method = FlowMatching(p_uncond=0.0)
    assert method.roles()["student"].trainable and method.sampler == "flow"
    model = FlowAsTrigFlow(Velocity())
    method.bind({"student": model})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    batch = {"x0": SIGMA_D * torch.full((64, 3, 2, 2), 0.5)}
    first = method.loss("student", batch, 0)["loss"].item()
    for step in range(200):
        loss = method.loss("student", batch, step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first
