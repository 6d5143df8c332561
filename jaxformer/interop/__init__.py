"""Import and export of other libraries' weights and tokenizers.

model, params = from_hf("dir")          # transformers GPT-2 / LLaMA → jaxformer
to_hf(model, params, "out")             # jaxformer → transformers (same logits)
to_hf_tokenizer_json(tok, "out/tokenizer.json")   # a Tokenizer → HF tokenizers
config, params, tok = load_checkpoint("dir")       # a run or an HF directory, for inference
config, params = load_weights("dir")               # the same, its tokenizer not read
config = read_model_config("dir")                  # its model alone, no weights read
"""

from .families import MODEL_TYPES, config_from_hf, config_to_hf
from .hf import from_hf, to_hf
from .load import is_hf_dir, load_checkpoint, load_weights, read_model_config
from .tokenizer_json import to_hf_tokenizer_json

__all__ = [
    "MODEL_TYPES",
    "config_from_hf",
    "config_to_hf",
    "from_hf",
    "is_hf_dir",
    "load_checkpoint",
    "load_weights",
    "read_model_config",
    "to_hf",
    "to_hf_tokenizer_json",
]
