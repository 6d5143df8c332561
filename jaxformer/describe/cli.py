"""jaxformer describe MODEL: a model stated as the chain of maps it is.

MODEL is a preset name (gpt2-small, ...), a JSON file (the JSON of Config.to_dict(), or
a Hugging Face config.json of a supported family), a training run directory (its
config.json verified against the run's SHA256SUMS), or a Hugging Face model directory
(its config.json; the weights are not read).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..interop import config_from_hf, is_hf_dir
from ..models import PRESETS, Config, build
from ..rundir_load import read_configs
from . import FORMATS, chain, latex_document
from .render import RENDERERS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "describe",
        help="state a model as a chain of maps: formulas, shapes, parameters, FLOPs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help=f"a preset ({', '.join(PRESETS)}), a config JSON file, a run directory or an "
        "HF model directory",
    )
    p.add_argument("--format", choices=FORMATS, default="text", help="default: text")
    p.add_argument(
        "-T",
        type=int,
        default=None,
        help="the sequence length FLOPs per token are counted at (default: the context)",
    )
    p.add_argument(
        "--standalone",
        action="store_true",
        help="with --format latex: a complete document for pdflatex",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.model)
        c = chain(build(config), args.T)
    except ValueError as e:  # a damaged or foreign run directory too (CheckpointError)
        print(f"jaxformer describe: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"jaxformer describe: cannot read {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    if args.standalone and args.format != "latex":
        print("jaxformer describe: --standalone needs --format latex", file=sys.stderr)
        return 2
    sys.stdout.write(latex_document(c) if args.standalone else RENDERERS[args.format](c))
    return 0


def load_config(source: str) -> Config:
    """The ``Config`` named by ``source``: a preset, a JSON file, a run directory or an HF
    model directory."""
    if source in PRESETS:
        return PRESETS[source]
    path = Path(source)
    if is_hf_dir(path):
        return _from_json(path / "config.json")
    if path.is_dir():
        return _from_run(path)
    if path.is_file():
        return _from_json(path)
    raise ValueError(
        f"{source!r} is neither a preset ({', '.join(PRESETS)}) nor an existing file or "
        "directory; pass a preset name, a config JSON file, a run or an HF model directory"
    )


def _from_json(path: Path) -> Config:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object of Config fields, got {type(d).__name__}")
    if "model_type" in d:  # a Hugging Face config.json
        return config_from_hf(d, str(path))
    try:
        return Config.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e} (expected the JSON of Config.to_dict())") from None


def _from_run(path: Path) -> Config:
    return read_configs(path)[1]
