"""HF model directories as transformers and tokenizers write them, built in the test:
a small random model (``from_config``, nothing downloaded) saved with ``save_pretrained``
and a byte-level BPE trained with ``tokenizers`` saved beside it as tokenizer.json; and a
run directory as training writes one (``train.checkpoint``), for the commands that take
either."""

from pathlib import Path

import torch
import transformers
from conftest import REPO
from hf_reference import randomize
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

TEXT = (REPO / "jaxformer" / "data" / "shakespeare.txt").read_text()[5_000:9_000]
V = 320  # the models' vocabulary: the tokenizer's 300 ids, and unused ones
EOT = "<|endoftext|>"


def byte_level_tokenizer(text: str = TEXT, vocab_size: int = 300) -> Tokenizer:
    """GPT-2's pipeline (byte-level, no prefix space), trained on ``text``; ``EOT`` special.
    No initial alphabet: every token is text of ``text``, so decoding is exact."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT],
                                  show_progress=False)  # fmt: skip
    tok.train_from_iterator([text], trainer)
    return tok


def hf_config(family: str, eos: int, context: int = 64):
    """A 2-layer model of ``family`` (d = 32) whose generate stops at ``eos``."""
    common = dict(vocab_size=V, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    if family == "gpt2":
        return transformers.GPT2Config(n_positions=context, n_embd=32, n_layer=2, n_head=2,
                                       **common)  # fmt: skip
    if family == "llama":
        return transformers.LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=context, tie_word_embeddings=False,
            **common,
        )  # fmt: skip
    raise ValueError(family)


def hf_dir(path: Path, family: str, seed: int = 0, tokenizer: bool = True):
    """(the torch model, its tokenizers.Tokenizer): a random ``family`` model (logits of
    about 5–10: decisive argmaxes) saved to ``path``, with tokenizer.json unless told."""
    tok = byte_level_tokenizer()
    torch.manual_seed(seed)
    config = hf_config(family, tok.token_to_id(EOT))
    config._attn_implementation = "eager"
    hf = transformers.AutoModelForCausalLM.from_config(config)
    randomize(hf, seed, head=3.0)
    hf.save_pretrained(path)
    if tokenizer:
        tok.save(str(path / "tokenizer.json"))
    return hf, tok


def write_run(run: Path, config, params, tok) -> None:
    """A run directory as training writes it, holding ``params`` as its checkpoint."""
    from jaxformer.train import TrainConfig
    from jaxformer.train.checkpoint import Checkpoints, save_run_files
    from jaxformer.train.optim import optimizer

    train = TrainConfig.preset("tiny", out=str(run))
    save_run_files(run, train, config, tok)
    ckpt = Checkpoints(run)
    meta = {"sampler": {"seed": 0, "step": 1}, "model": config.to_dict()}
    ckpt.save(1, params, optimizer(train).init(params), meta)
    ckpt.wait()
    ckpt.close()
