"""The NVlabs -> diffusers converter (pipelines/sana/convert.py) against NVlabs' own module tree: the input state
dicts come from toy-size stand-ins of NVlabs' SanaMS / SanaMSCM / SanaMSControlNet (tests/pipelines/sana/
nvlabs_toy.py, written from their repository), not from the converter's inverse, so a wrong rule fails here."""

from __future__ import annotations

import pytest
import torch
from diffusers import SanaControlNetModel, SanaTransformer2DModel
from torch import Tensor, nn

from pipelines.sana import convert as sana_convert
from pipelines.sana.config import controlnet_config, transformer_config
from pipelines.sana.controlnet import SprintControlNet
from pipelines.sana.load import load_nvlabs
from pipelines.spec import ModelError
from tests.pipelines.sana.nvlabs_toy import ToySanaMS, ToySanaMSControlNet, randomize

SPRINT = pytest.mark.parametrize("sprint", [False, True], ids=["sana1-hed", "sprint-qknorm-guidance"])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def nvlabs_kwargs(sprint: bool) -> dict:
    """NVlabs constructor arguments of the same tiny model as `transformer_config("tiny", sprint=sprint)`: SANA 1.0
    (Sana_600M_img1024_controlnet.yaml: y_norm, no QK-norm) or SANA-Sprint (SanaSprint_*_scm_ladd.yaml: qk_norm and
    cross_norm, cfg_embed, logvar)."""
    config = transformer_config("tiny", sprint=sprint)
    assert config["out_channels"] == config["in_channels"]  # pred_sigma=False, as both NVlabs configs have it
    return dict(
        hidden_size=config["num_attention_heads"] * config["attention_head_dim"],
        depth=config["num_layers"],
        patch_size=config["patch_size"],
        in_channels=config["in_channels"],
        caption_channels=config["caption_channels"],
        mlp_ratio=config["mlp_ratio"],
        input_size=config["sample_size"],
        y_norm=True,
        qk_norm=sprint,
        cross_norm=sprint,
        cfg_embed=sprint,
        logvar=sprint,
    )


def flags(sprint: bool) -> dict:
    return {"qk_norm": sprint, "guidance": sprint}


def assert_loads_strictly(converted: dict[str, Tensor], model: nn.Module) -> None:
    """Same keys (listing the missing and unexpected ones), same shapes, and a strict load."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(converted)), sorted(set(converted) - set(expected))
    assert not missing and not unexpected, f"missing {missing}\nunexpected {unexpected}"
    shapes = [
        f"{k}: {tuple(converted[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if converted[k].shape != v.shape
    ]
    assert not shapes, "shape mismatches:\n" + "\n".join(shapes)
    model.load_state_dict(converted, strict=True)


@SPRINT
def test_sana_nvlabs_transformer_converts_to_diffusers_transformer(sprint):
    """A SanaMS (SANA 1.0) / SanaMSCM (Sprint) state dict -> SanaTransformer2DModel, every key used or known-unused
    (the null caption, the sin-cos table, Sprint's logvar head)."""
    state = randomize(ToySanaMS(**nvlabs_kwargs(sprint))).state_dict()
    model = SanaTransformer2DModel(**transformer_config("tiny", sprint=sprint))
    rules = sana_convert.transformer_rules(model.config.num_layers, **flags(sprint))
    assert_loads_strictly(sana_convert.convert(state, rules), model)
    assert sana_convert.unused_keys(state, rules) == []
    dropped = {"y_embedder.y_embedding", "pos_embed"} | (
        {"logvar_linear.weight", "logvar_linear.bias"} if sprint else set()
    )
    assert {k for k in state if k not in {r.src for r in rules}} == dropped


@SPRINT
def test_sana_nvlabs_controlnet_checkpoint_converts_to_base_and_branch(sprint, tmp_path):
    """A SanaMSControlNet state dict -> the base SanaTransformer2DModel and the SprintControlNet branch (also
    diffusers' SanaControlNetModel for SANA 1.0's HED layout); load_nvlabs reads the .pth to the same tensors and
    refuses a key it does not know."""
    kwargs = nvlabs_kwargs(sprint)
    branch_config = controlnet_config("tiny", sprint=sprint)
    toy = randomize(ToySanaMSControlNet(copy_blocks_num=branch_config["num_layers"], **kwargs))
    state = toy.state_dict()
    base = SanaTransformer2DModel(**transformer_config("tiny", sprint=sprint))
    branch = SprintControlNet(**branch_config)
    base_rules = sana_convert.transformer_rules(base.config.num_layers, **flags(sprint))
    branch_rules = sana_convert.controlnet_rules(branch.config.num_layers, **flags(sprint))
    assert_loads_strictly(sana_convert.convert(state, base_rules), base)
    assert_loads_strictly(sana_convert.convert(state, branch_rules), branch)
    if not sprint:
        config = {k: v for k, v in branch_config.items() if k != "wiring"}
        reference = SanaControlNetModel(**config, interpolation_scale=None)
        assert_loads_strictly(sana_convert.convert(state, branch_rules), reference)
    assert sana_convert.unused_keys(state, base_rules, branch_rules) == []

    inferred = sana_convert.infer_config(state)
    assert (inferred["num_layers"], inferred["control_layers"]) == (kwargs["depth"], branch_config["num_layers"])
    assert inferred["qk_norm"] == inferred["guidance"] == sprint and inferred["mlp_ratio"] == kwargs["mlp_ratio"]

    path = tmp_path / "checkpoints" / "model.pth"
    path.parent.mkdir()
    torch.save({"state_dict": state}, path)
    loaded_base, loaded_branch = load_nvlabs(path, torch.float32)
    for model, rules in ((loaded_base, base_rules), (loaded_branch, branch_rules)):
        converted, got = sana_convert.convert(state, rules), model.state_dict()
        assert set(converted) == set(got) and all(torch.equal(converted[k], got[k]) for k in got)
    assert loaded_branch.config.wiring == "nvlabs" and loaded_branch.config.dense_time == sprint
    assert (loaded_base.config.qk_norm is not None) == sprint and loaded_base.config.guidance_embeds == sprint

    state["blocks.0.attn.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, path)
    with pytest.raises(ModelError, match="does not know"):
        load_nvlabs(path, torch.float32)


def test_sana_nvlabs_fused_projections_split_in_nvlabs_order():
    """LiteLA reshapes qkv's output to (..., 3, C) and MultiHeadCrossAttention kv_linear's to (..., 2, C): q, k, v
    are consecutive row blocks of the fused weights, which is how the converter must split them."""
    toy = randomize(ToySanaMSControlNet(copy_blocks_num=2, **nvlabs_kwargs(True)))
    state, width = toy.state_dict(), toy.blocks[0].attn.proj.in_features
    out = sana_convert.convert(state, sana_convert.transformer_rules(len(toy.blocks), qk_norm=True, guidance=True))
    branch = sana_convert.convert(state, sana_convert.controlnet_rules(2, qk_norm=True, guidance=True))
    pairs = ((out, "blocks.1"), (branch, "controlnet.1.copied_block"))  # base block 1, branch block 1
    for converted, src in pairs:
        fused = {"attn.qkv.weight": "qkv", "cross_attn.kv_linear.weight": "kv", "cross_attn.kv_linear.bias": "kv"}
        for key, names in fused.items():
            attn, kind = "attn2" if key.startswith("cross") else "attn1", key.rpartition(".")[2]
            for i, name in enumerate(names):
                got = converted[f"transformer_blocks.1.{attn}.to_{name}.{kind}"]
                assert torch.equal(got, state[f"{src}.{key}"][i * width : (i + 1) * width]), f"{src}.{key} -> {name}"
    assert torch.equal(branch["input_block.weight"], state["controlnet.0.before_proj.weight"])
    assert torch.equal(branch["controlnet_blocks.1.bias"], state["controlnet.1.after_proj.bias"])
    assert torch.equal(out["time_embed.guidance_embedder.linear_2.weight"], state["cfg_embedder.mlp.2.weight"])
