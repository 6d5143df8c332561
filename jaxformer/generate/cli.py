"""``jaxformer sample``: text from a trained checkpoint, printed as it is generated.

    jaxformer sample --checkpoint runs/shakespeare --prompt "ROMEO:" --max-new-tokens 200 \\
        --temperature 0.8 --top-k 50 --top-p 0.95 --seed 0 --weights int8

``--checkpoint`` is a training run or an HF directory (config.json, *.safetensors and
tokenizer.json or vocab.json + merges.txt), read by ``interop.load_checkpoint``.

The prompt is printed, then each token's bytes as the compiled loop emits them
(an incremental UTF-8 decoder holds back a character split across tokens). The
tokenizer's ``<|endoftext|>`` stops the text. ``--max-new-tokens`` beyond what the
context leaves after the prompt is clipped to it, with a note. As in ``jaxformer
tokenizer encode``, a special token in the prompt is refused unless ``--allow-special``,
and a prompt that is not valid UTF-8 unless ``--errors replace``.
"""

from __future__ import annotations

import codecs
import sys
from pathlib import Path
from typing import TextIO

import numpy as np


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sample",
        help="generate text from a trained checkpoint",
        description="Continue a prompt with a trained model, streaming the text.",
    )
    p.add_argument(
        "--checkpoint", required=True, type=Path, metavar="RUN_DIR|HF_DIR",
        help="a training run directory, or an HF directory with its tokenizer",
    )  # fmt: skip
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument(
        "--max-new-tokens", type=int, default=None,
        help="at most this many tokens (default 200, or fewer where the context ends)",
    )  # fmt: skip
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=0, help="the random seed (same seed, same text)")
    p.add_argument(
        "--weights", default="float32", metavar="float32|bfloat16|int8",
        help="how the decode loop stores its matrices: float32 (default), bfloat16, or int8 "
        "per output channel (fewer bytes read per token; activations stay float32)",
    )  # fmt: skip
    p.add_argument(
        "--allow-special",
        action="store_true",
        help="encode special tokens in the prompt (e.g. <|endoftext|>) as their ids",
    )
    p.add_argument(
        "--errors",
        choices=("strict", "replace"),
        default="strict",
        help="a prompt that is not valid UTF-8: refuse it (strict, the default) or replace "
        "the bad bytes with U+FFFD",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    from ..core.stored import check_weights
    from ..interop import load_checkpoint

    try:
        check_weights(args.weights, "--weights")
        if not args.prompt:
            raise ValueError("--prompt is empty; give the text to continue, e.g. --prompt 'The'")
        prompt = _text(args.prompt, args.errors)
        if not 0 <= args.seed < 2**32:
            raise ValueError(f"--seed {args.seed}: must lie in [0, 2**32)")
        if args.max_new_tokens is not None and args.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens {args.max_new_tokens}: must be at least 1")
        config, params, tokenizer = load_checkpoint(args.checkpoint)
        n = _clip(config, tokenizer, prompt, args.max_new_tokens, args.allow_special)
        sample(
            config, params, tokenizer, prompt, max_new_tokens=n, temperature=args.temperature,
            top_k=args.top_k, top_p=args.top_p, seed=args.seed, allow_special=args.allow_special,
            weights=args.weights,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        print(f"jaxformer sample: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"jaxformer sample: error: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


def _text(prompt: str, errors: str) -> str:
    """The prompt as valid text: bytes the command line could not decode as UTF-8 (lone
    surrogates, here) are refused, or replaced by U+FFFD with ``--errors replace``."""
    try:
        prompt.encode("utf-8")
        return prompt
    except UnicodeEncodeError as e:
        if errors == "replace":
            raw = prompt.encode("utf-8", "surrogateescape")
            return raw.decode("utf-8", "replace")
        raise ValueError(
            f"--prompt is not valid UTF-8 (a bad byte at character {e.start}); pass UTF-8 text, "
            "or --errors replace to replace the bad bytes with U+FFFD"
        ) from None


def _clip(config, tokenizer, prompt: str, n: int | None, allow_special: bool) -> int | None:
    """``--max-new-tokens``, clipped (with a note) to what the context leaves after the
    prompt; a prompt that leaves no room is refused."""
    if not allow_special and (found := [t for t in tokenizer.special_tokens if t in prompt]):
        raise ValueError(
            f"--prompt contains the special token {found[0]!r} at char {prompt.index(found[0])}; "
            "pass --allow-special to encode it as its id"
        )
    ids = tokenizer.encode(prompt, allowed_special="all" if allow_special else ())
    room = config.context - len(ids)
    if room < 1:
        raise ValueError(
            f"--prompt is {len(ids)} tokens, and the model's context is {config.context}: no "
            f"room for a new token; shorten the prompt to under {config.context} tokens"
        )
    if n is not None and n > room:
        print(
            f"note: --max-new-tokens {n} clipped to {room}: the prompt's {len(ids)} tokens and "
            f"{room} new ones fill the context of {config.context}",
            file=sys.stderr,
        )
        return room
    return n


def sample(
    config, params, tokenizer, prompt: str, *, max_new_tokens: int | None = None,
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
    seed: int = 0, out: TextIO | None = None, allow_special: bool = False,
    weights: str = "float32",
) -> list[int]:  # fmt: skip
    """Write ``prompt`` and its continuation to ``out`` (stdout) as it is generated;
    return the new token ids, up to the first stop token. ``max_new_tokens=None``:
    200, or as many as the context leaves after the prompt if that is fewer. A special
    token in the prompt is a ValueError unless ``allow_special``. ``weights``: as in
    ``generate`` (the decode loop's matrices in float32, bfloat16 or int8)."""
    import jax

    from ..models import build
    from ..tokenizer import ENDOFTEXT
    from .loop import generate

    if not prompt:
        raise ValueError("the prompt is empty; give the text to continue")
    out = out or sys.stdout
    ids = tokenizer.encode(prompt, allowed_special="all" if allow_special else ())
    stops = [i for s, i in tokenizer.special_tokens.items() if s == ENDOFTEXT]
    if max_new_tokens is None:
        max_new_tokens = max(1, min(200, config.context - len(ids)))
    text = _Stream(tokenizer, stops, out, prompt)
    new = generate(
        build(config), params, ids, max_new_tokens, key=jax.random.key(seed),
        temperature=temperature, top_k=top_k, top_p=top_p, stop_tokens=stops, stream=text,
        weights=weights,
    )  # fmt: skip
    text.close()
    new = np.asarray(new).tolist()
    return new[: next((i for i, t in enumerate(new) if t in stops), len(new))]


class _Stream:
    """Called with each step's tokens [1]: writes the prompt (once generation has started,
    so that a rejected argument prints nothing), then each token's text until a stop.

    An id the tokenizer lacks (an HF model's vocabulary is often padded beyond its
    tokenizer's) is text of no bytes, as ``tokenizers``' decode drops it; ``close`` notes
    on stderr how many there were."""

    def __init__(self, tokenizer, stops, out: TextIO, prompt: str):
        self.tokenizer, self.stops, self.out, self.prompt = tokenizer, set(stops), out, prompt
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stopped = False
        self.unknown = 0  # ids ≥ the tokenizer's n_vocab

    def __call__(self, tokens_B) -> None:
        self.out.write(self.prompt)
        self.prompt = ""
        t = int(tokens_B[0])
        self.stopped = self.stopped or t in self.stops
        if not self.stopped:
            known = t < self.tokenizer.n_vocab
            self.unknown += not known
            self.out.write(self.utf8.decode(self.tokenizer.decode_bytes([t]) if known else b""))
            self.out.flush()

    def close(self) -> None:
        self.out.write(self.utf8.decode(b"", final=True) + "\n")
        self.out.flush()
        if self.unknown:
            print(
                f"note: {self.unknown} generated ids lie beyond the tokenizer's "
                f"{self.tokenizer.n_vocab} (the model's vocabulary is larger): printed as "
                "nothing, as tokenizers' decode drops them",
                file=sys.stderr,
            )
