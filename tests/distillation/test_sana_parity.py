"""Train == serve for Sana: the trainer's student and the Sana engine's denoiser draw the same latents from the same
weights, the same caption (with its padding mask) and the same noise."""

import copy

import numpy as np
import pytest
import torch

from distillation.batching import make_batch
from distillation.roles import trainable_copy
from distillation.teachers import build_teacher
from pipelines.parameterization import SIGMA_D
from pipelines.sana.engine import SanaSprintEngine
from pipelines.sana.sampling import sample_scm, sprint_timesteps
from pipelines.sana.text import encode_text
from pipelines.testing import build_random_sana

PROMPT = "a red house by a lake"
SIZE = (128, 128)  # the tiny DC-AE's f8: 16x16 latents, the tiny teacher's sample shape
SEED, STEPS = 3, 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_trainers_sana_student_samples_what_the_engine_serves():
    parts = build_random_sana("tiny", seed=0)
    teacher = build_teacher(kind="sana", random="tiny", controlnet=True)
    student = trainable_copy(teacher.model)  # the trainer's full-copy student role
    flow = student.flow_model
    served = {"transformer": copy.deepcopy(flow.transformer), "controlnet": copy.deepcopy(flow.controlnet)}
    engine = SanaSprintEngine.from_components(
        {**parts, **served}, name="parity", device="cpu", dtype=torch.float32, native_resolution=SIZE[0]
    )
    sketch = np.zeros((*SIZE, 3), np.uint8)
    sketch[40:90, 30:100] = 255
    prompt, control = engine.encode_prompt(PROMPT), engine.encode_control(sketch, SIZE)

    # the trainer's data item: the caption as the pipelines encode it, its padding mask beside it
    text, mask, _, _ = encode_text(parts["tokenizer"], parts["text_encoder"], PROMPT)
    assert 0 < mask.sum() < mask.numel()  # padded: a dropped mask changes the cross-attention
    item = {"x0": torch.zeros(teacher.sample_shape), "text": text[0], "text_mask": mask[0]}
    item["control"] = control.tensors["latent"][0]
    batch = make_batch([item], guidance=(engine.guidance,), uncond_keys=teacher.uncond_keys, device="cpu")

    noise = engine.noise(SEED, STEPS, tuple(teacher.sample_shape[-2:]))
    with torch.no_grad():
        trained = sample_scm(lambda x, t: student(x, t, batch["student_cond"]), noise, sprint_timesteps(STEPS))
    drawn = engine.sample_latents(prompt, control, seed=SEED, steps=STEPS, resolution=SIZE)
    assert (trained / SIGMA_D - drawn).abs().max().item() < 1e-5
