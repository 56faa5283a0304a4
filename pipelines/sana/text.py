"""Text: the Gemma-2 tokenizer and encoder with the complex human instruction (CHI) prefix and its attention mask."""

# b batch, c latent channels (32), h w pixel height width, hl wl latent height width (h // 32), n text tokens (300),
# d transformer width, s flow time in [0, 1], t TrigFlow time in [0, pi/2], N sampling steps

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from transformers import GemmaTokenizer

from pipelines.sana.config import CHI, MAX_SEQUENCE_LENGTH


def make_gemma_tokenizer() -> GemmaTokenizer:
    """A Gemma tokenizer with a generated character vocab (specials, byte fallback, "▁", printable ASCII) and no
    merges: Gemma's text handling (BOS, right padding, byte fallback) without downloading its vocabulary."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({f"<0x{b:02X}>": 5 + b for b in range(256)})
    for char in ["▁", *map(chr, range(33, 127))]:
        vocab.setdefault(char, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[], add_bos_token=True, model_max_length=MAX_SEQUENCE_LENGTH)


@torch.inference_mode()
def encode_text(
    tokenizer: Any,
    encoder: nn.Module,
    text: str,
    *,
    chi: Sequence[str] = CHI,
    max_length: int = MAX_SEQUENCE_LENGTH,
) -> tuple[Tensor, Tensor, int, bool]:
    """Gemma hidden states as SanaSprintPipeline.encode_prompt gives them: lower-cased prompt after the CHI prefix,
    right padding to CHI tokens + max_length - 2, then BOS + the last max_length - 1 positions (SANA sec. 3.1).
    Returns embeddings (1, n, caption), mask (1, n), the prompt tokens kept, and whether the prompt was cut."""
    text = text.lower().strip()
    prefix = "\n".join(chi)
    n_prefix = len(tokenizer.encode(prefix))  # BOS included
    total = n_prefix + max_length - 2 if chi else max_length
    tokenizer.padding_side = "right"
    inputs = tokenizer(
        prefix + text,
        padding="max_length",
        max_length=total,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    n_all = len(tokenizer(prefix + text, verbose=False).input_ids)  # untruncated, to tell the user
    device = next(encoder.parameters()).device
    mask = inputs.attention_mask.to(device)
    hidden = encoder(inputs.input_ids.to(device), attention_mask=mask)[0]
    select = [0, *range(-max_length + 1, 0)]
    return hidden[:, select], mask[:, select], min(n_all, total) - n_prefix, n_all > total


def text_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """The caption's attention mask (b, n) (1 keep, 0 pad) as the additive bias (b, 1, n) the transformer's cross
    attention adds (0 keep, -10000 pad), as SanaTransformer2DModel.forward converts encoder_attention_mask."""
    return ((1 - mask.to(dtype)) * -10000.0)[:, None]
