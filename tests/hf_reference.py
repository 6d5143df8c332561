"""transformers as the reference: random models built from config objects (nothing is
downloaded), their logits, and the relative difference the interop tests bound."""

import numpy as np
import torch
import transformers


def randomize(model, seed: int, std: float = 0.2, head: float | None = None):
    """Every parameter random: norm gains (LayerNorm, RMSNorm, q_norm, k_norm) in [0.5, 1.5),
    the rest N(0, std²); with ``head``, the (un)embedding N(0, head²/d), which sets the size
    of the logits (about 5–10, as a trained model's, for head 2–4)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            gain = ("norm" in name or "ln_" in name) and name.endswith("weight")
            outer = head is not None and ("embed" in name or "lm_head" in name)
            s = head / model.config.hidden_size**0.5 if outer else std
            p.copy_(torch.rand(p.shape, generator=g) + 0.5 if gain else
                    s * torch.randn(p.shape, generator=g))  # fmt: skip
    return model.eval()


def save_hf(model, path, bin: bool = False) -> None:
    """``save_pretrained``, or with ``bin`` the pre-safetensors format: the config and a
    state_dict in pytorch_model.bin."""
    if bin:
        model.config.save_pretrained(path)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    else:
        model.save_pretrained(path)


def hf_logits(model, tokens) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(tokens)).logits.numpy()


def load_hf(path):
    m = transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    return m.eval()


def rel(got, want) -> float:
    """max |got − want| / max |want|."""
    return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


def hf_greedy(hf, prompt: list[int], n: int) -> np.ndarray:
    """transformers' greedy ``generate``: the n ids after ``prompt``."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                          do_sample=False)  # fmt: skip
    return out[0, len(prompt) :].numpy()


def random_export(model, path, seed: int, embed_scale: float):
    """(params, the export loaded by transformers) of a jaxformer ``model`` with every
    parameter random (gains ≠ 1 and biases ≠ 0 too), the embedding ×``embed_scale``
    (logits of about 5–10)."""
    import jax

    from jaxformer.core import is_param
    from jaxformer.interop import to_hf

    rng = np.random.default_rng(seed)
    draw = lambda p: (p.fill + 0.3 * rng.standard_normal(p.shape)).astype(np.float32)
    params = jax.tree.map(draw, model.spec(), is_leaf=is_param)
    params["embed"]["W_E"] *= embed_scale
    to_hf(model, params, path)
    return params, load_hf(path)
