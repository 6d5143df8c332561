"""A checkpoint for inference, from either place one lives: a run or an HF directory.

    load_checkpoint(path) = (Config, params, tokenizer)
        path an HF directory (config.json naming a "model_type", *.safetensors or
        pytorch_model.bin, tokenizer.json or vocab.json + merges.txt)
                        → from_hf(path) and Tokenizer.from_hf(path)
        otherwise       → rundir_load.load_for_inference(path)   (a run `jaxformer train` wrote)
    load_weights(path) = (Config, params)          the same weights, no tokenizer read

so every command that takes ``--checkpoint`` (sample, eval, convert) takes either. A
directory is an HF one by its config.json alone (``rundir_load.is_hf_config``): a run's holds
"train" and "model". Everything is read and checked here, on the host, before any jit: a
missing file, a damaged one, or a tokenizer with more ids than the model's vocabulary is
a ``ValueError`` (or ``FileNotFoundError``) naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import rundir_load
from ..models import Config
from ..tokenizer import HFTokenizer, Tokenizer
from .families import config_from_hf
from .hf import from_hf, read_config

TOKENIZER_FILES = ("tokenizer.json", "vocab.json")  # vocab.json goes with merges.txt


def is_hf_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory whose config.json is a Hugging Face one."""
    return Path(path).is_dir() and rundir_load.is_hf_config(Path(path) / "config.json")


def has_hf_tokenizer(path: str | os.PathLike) -> bool:
    """Whether the HF directory ``path`` holds tokenizer.json or vocab.json + merges.txt."""
    p = Path(path)
    return (p / "tokenizer.json").is_file() or (
        (p / "vocab.json").is_file() and (p / "merges.txt").is_file()
    )


def read_model_config(path: str | os.PathLike) -> Config:
    """The model ``Config`` of a run or an HF directory, its config.json checked; no weight
    is read (a ``ValueError`` or ``FileNotFoundError`` names what is wrong)."""
    if is_hf_dir(path):
        return config_from_hf(read_config(Path(path)), str(Path(path) / "config.json"))
    return rundir_load.read_configs(path)[1]


def load_hf_dir(
    path: str | os.PathLike, tokenizer: bool = True
) -> tuple[Config, dict, HFTokenizer | None]:
    """(config, params, tokenizer) of an HF directory; ``tokenizer=False``: None where the
    directory has no tokenizer files (with them, it is read and checked all the same)."""
    path = Path(path)
    if tokenizer and not has_hf_tokenizer(path):
        raise ValueError(
            f"{path}: a Hugging Face model directory without a tokenizer (no tokenizer.json, "
            "nor vocab.json + merges.txt); save the model's tokenizer into it "
            "(AutoTokenizer.from_pretrained(...).save_pretrained(dir))"
        )
    tok = Tokenizer.from_hf(path) if has_hf_tokenizer(path) else None
    model, params = from_hf(path)
    config = model.config
    if tok is not None and tok.n_vocab > config.vocab_size:
        raise ValueError(
            f"{path}: the tokenizer has {tok.n_vocab} ids, the model's vocabulary only "
            f"{config.vocab_size} (vocab_size in config.json); the tokenizer belongs to "
            "another model: save this model's tokenizer into the directory"
        )
    return config, params, tok


def load_checkpoint(
    path: str | os.PathLike, tokenizer: bool = True
) -> tuple[Config, dict, Tokenizer | HFTokenizer | None]:
    """(config, params, tokenizer) of a run or an HF directory (see the module docstring);
    ``tokenizer=False`` accepts an HF directory without one (its tokenizer is then None)."""
    if is_hf_dir(path):
        return load_hf_dir(path, tokenizer)
    return rundir_load.load_for_inference(path)


def load_weights(path: str | os.PathLike) -> tuple[Config, dict]:
    """(config, params) of a run or an HF directory, as ``load_checkpoint`` gives them, its
    tokenizer not parsed (for a caller that has read it already: ``--init-from``)."""
    if is_hf_dir(path):
        model, params = from_hf(path)
        return model.config, params
    return rundir_load.load_weights(path)
