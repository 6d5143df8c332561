"""What the families' HF config mappings (``interop/families/<name>.py``) share.

Read as plain JSON (transformers is not needed at run time). A field that
would make the HF model compute something jaxformer does not implement is
rejected with an error naming the field, rather than silently ignored.
"""

from __future__ import annotations

from ..models import Config


def make_config(where: str, **fields) -> Config:
    try:
        return Config(**fields)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e


def reject(where: str, field: str, value, why: str) -> ValueError:
    return ValueError(f"{where}: {field}={value!r} is not supported: {why}")


def rope_theta(hf: dict, where: str) -> float:
    """θ of plain RoPE. transformers 5 keeps it in ``rope_parameters``; older files have
    a top-level ``rope_theta`` and a ``rope_scaling`` dict (or null)."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    field = "rope_parameters" if hf.get("rope_parameters") else "rope_scaling"
    if any(isinstance(v, dict) for v in rope.values()):
        raise reject(where, field, rope, "RoPE per layer type is not implemented")
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise reject(
            where, f"{field}.rope_type", kind, "only plain RoPE ('default') is implemented"
        )
    factor = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if factor != 1.0:
        raise reject(where, "partial_rotary_factor", factor, "jaxformer rotates whole heads")
    return rope.get("rope_theta", hf.get("rope_theta", 10000.0))


def common_fields(c: Config) -> dict:
    """The fields every exported ``config.json`` has; fails for what no HF model expresses."""
    if c.attn_only:
        raise ValueError("to_hf: attn_only=True models have no MLP; HF's blocks always have one")
    if not c.final_norm:
        raise ValueError("to_hf: final_norm=False has no HF counterpart (ln_f/norm is always on)")
    return dict(
        vocab_size=c.vocab_size,
        tie_word_embeddings=c.tied,
        initializer_range=c.init_std,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        dtype="float32",
        use_cache=True,
    )
