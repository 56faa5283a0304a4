"""controlnet-aux's detectors through their own from_pretrained on a local folder of random weights saved under the
annotator repository's file names (no hub): they load those files, draw black-on-white lines, and the pickers say
which extractors are usable and why the others are not."""

import numpy as np
import pytest
import torch

from pipelines.lines import AUX, aux_module, load_detector, usable_extractors, weights_state
from pipelines.preprocess import InputError, extract_lines


@pytest.fixture(scope="module")
def annotators(tmp_path_factory):
    """Random weights of the real model classes under the names lllyasviel/Annotators uses (float16: half the disk;
    load_state_dict casts them back)."""
    folder = tmp_path_factory.mktemp("annotators")
    torch.manual_seed(0)
    half = lambda module: {k: v.half() for k, v in module.state_dict().items()}  # noqa: E731
    torch.save(half(aux_module("hed").ControlNetHED_Apache2()), folder / "ControlNetHED.pth")
    torch.save({"state_dict": aux_module("pidi.model").pidinet().state_dict()}, folder / "table5_pidinet.pth")
    for name in ("sk_model.pth", "sk_model2.pth"):
        torch.save(half(aux_module("lineart").Generator(3, 1, 3)), folder / name)
    return folder


def networks(detector) -> list[torch.nn.Module]:
    return [getattr(detector, name) for name in ("netNetwork", "model", "model_coarse") if hasattr(detector, name)]


@pytest.mark.parametrize("key", sorted(AUX))
def test_detectors_load_our_files_through_their_own_loader_and_draw_canvas_lines(annotators, monkeypatch, key):
    monkeypatch.setenv("SKETCHSPRINT_ANNOTATORS", str(annotators))
    detector = load_detector(key, str(annotators))
    saved = torch.load(annotators / AUX[key].files[0], map_location="cpu")
    saved = saved.get("state_dict", saved)
    loaded = networks(detector)[0].state_dict()
    assert set(saved) == {k.removeprefix("module.") for k in loaded} or set(saved) == set(loaded)
    for name, value in saved.items():
        torch.testing.assert_close(loaded[name.removeprefix("module.")], value.float(), rtol=0, atol=0)
    photo = np.full((96, 80, 3), 230, np.uint8)
    photo[24:72, 20:60] = 20
    lines = extract_lines(photo, key)
    assert lines.shape == photo.shape and set(np.unique(lines)) <= {0, 255}  # black ink on white paper
    assert (lines[..., 0] == lines[..., 1]).all()


def test_the_picker_lists_usable_extractors_first_and_says_why_the_others_are_not(annotators, tmp_path, monkeypatch):
    monkeypatch.setenv("SKETCHSPRINT_ANNOTATORS", str(annotators))
    usable, notes = usable_extractors()
    assert usable[:3] == list(AUX) and usable[-2:] == ["lineart", "canny"] and not set(AUX) & set(notes)

    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "sk_model.pth").write_bytes((annotators / "sk_model.pth").read_bytes())
    monkeypatch.setenv("SKETCHSPRINT_ANNOTATORS", str(tmp_path / "partial"))
    usable, notes = usable_extractors()
    assert not set(AUX) & set(usable) and "canny" in usable
    assert notes["aux_lineart"] == f"sk_model2.pth not in {tmp_path / 'partial'}"
    with pytest.raises(InputError, match="PiDiNet \\(controlnet-aux\\): table5_pidinet.pth not in"):
        extract_lines(np.zeros((8, 8, 3), np.uint8), "aux_pidinet")

    monkeypatch.delenv("SKETCHSPRINT_ANNOTATORS")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    ok, why = weights_state("aux_hed")
    assert (
        not ok
        and why == "its weights (ControlNetHED.pth from lllyasviel/Annotators) are not cached and the hub is offline"
    )
