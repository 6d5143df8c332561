"""The parts of a ``tokenizer.json`` that ``HFTokenizer`` reads as data, checked as read.

    read_model(model)        the BPE model: vocab, merges (``pair_bpe.Merges``), unk and flags
    read_added(entries, …)   added_tokens, by the id ``tokenizers`` assigns each
    template(post_processor) the ids put before and after a single text (a BOS, an EOS)

Each takes its part of the file through ``hf_json.Fields``, so an unknown or unimplemented
field is refused with one line naming it, never ignored; ``HFTokenizer.__init__`` keeps
what they return.
"""

from __future__ import annotations

from dataclasses import dataclass

from .hf_json import Fields, refuse
from .pair_bpe import Merges


@dataclass(frozen=True)
class AddedToken:
    """One entry of ``added_tokens`` (its id as ``tokenizers`` assigns it)."""

    id: int
    content: str
    single_word: bool
    lstrip: bool
    rstrip: bool
    normalized: bool
    special: bool


@dataclass(frozen=True)
class BPEModel:
    """The ``model`` of a tokenizer.json, read: what ``BPE::tokenize`` needs."""

    vocab: dict[str, int]  # token ↦ id
    token_of: dict[int, str]  # id ↦ token
    merges: Merges
    unk: str | None
    fuse_unk: bool
    byte_fallback: bool
    ignore_merges: bool


def read_model(f: Fields) -> BPEModel:
    """The ``model`` object (its ``Fields``) → a ``BPEModel``; anything but a plain BPE
    (dropout, subword prefixes and suffixes), a bad id or an unknown unk is refused."""
    f.must_be("type", ("BPE",), "only the BPE model is implemented")
    dropout = f.take("dropout", (int, float, type(None)), None)
    if dropout not in (None, 0):
        raise refuse(f.file, f.sub("dropout"), dropout, "BPE dropout is random: not a map")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if (value := f.take(key, (str, type(None)), None)) is not None:
            raise refuse(f.file, f.sub(key), value, "not implemented")
    unk = f.take("unk_token", (str, type(None)), None)
    fuse_unk = f.take("fuse_unk", bool, False)
    byte_fallback = f.take("byte_fallback", bool, False)
    ignore_merges = f.take("ignore_merges", bool, False)
    vocab = f.take("vocab", dict)
    bad = [(t, i) for t, i in vocab.items() if type(i) is not int or i < 0]
    if bad:
        raise refuse(f.file, f"model.vocab[{bad[0][0]!r}]", bad[0][1], "expected an id >= 0")
    if len(set(vocab.values())) != len(vocab):
        seen: dict[int, str] = {}
        t, i = next((t, i) for t, i in vocab.items() if seen.setdefault(i, t) != t)
        raise refuse(f.file, f"model.vocab[{t!r}]", i, f"the id of {seen[i]!r} too")
    if unk is not None and unk not in vocab:
        raise refuse(f.file, f.sub("unk_token"), unk, "not in model.vocab")
    token_of = {i: t for t, i in vocab.items()}
    merges = _merges(f.take("merges", list, []), vocab, f.file)
    f.done()
    return BPEModel(vocab, token_of, merges, unk, fuse_unk, byte_fallback, ignore_merges)


def read_added(entries: list, file: str, vocab: dict[str, int]) -> dict[int, AddedToken]:
    """``AddedVocabulary::add_tokens``: the ``added_tokens`` entries → id ↦ ``AddedToken``,
    in file order. An added token's id is its ``vocab`` id if the model has it, else the
    next free one after the model's; a file id that disagrees is refused (``tokenizers``
    only warns and uses its own)."""
    added: dict[int, AddedToken] = {}
    next_id = len(vocab)
    for n, entry in enumerate(entries):
        f = Fields(entry, file, f"added_tokens[{n}]")
        content = f.take("content", str)
        flags = {k: f.take(k, bool, d) for k, d in _ADDED_DEFAULTS.items()}
        if "normalized" not in entry:
            flags["normalized"] = not flags["special"]
        file_id = f.take("id", int)
        f.done()
        if not content or any(t.content == content for t in added.values()):
            raise refuse(file, f.sub("content"), content, "empty or listed twice")
        if (i := vocab.get(content)) is None:
            i, next_id = next_id, next_id + 1
        if file_id != i:
            raise refuse(file, f.sub("id"), file_id, f"tokenizers gives this token id {i}")
        added[i] = AddedToken(i, content, **flags)
    return added


_ADDED_DEFAULTS = {"single_word": False, "lstrip": False, "rstrip": False, "special": False,
                   "normalized": True}  # fmt: skip


def _merges(lines: list, vocab: dict[str, int], file: str) -> Merges:
    """The merges list → (id a, id b) ↦ (priority, id of a ‖ b); a later duplicate wins."""
    merges: Merges = {}
    for k, line in enumerate(lines):
        pair = line.split(" ") if isinstance(line, str) else line
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise refuse(file, f"model.merges[{k}]", line, 'expected "a b" or ["a", "b"]')
        a, b = pair
        ids = vocab.get(a), vocab.get(b), vocab.get(a + b)
        if None in ids:
            missing = (a, b, a + b)[ids.index(None)]
            raise refuse(file, f"model.merges[{k}]", line, f"{missing!r} is not in model.vocab")
        merges[ids[0], ids[1]] = (k, ids[2])
    return merges


def template(spec, file: str, where: str = "post_processor") -> tuple[list[int], list[int]]:
    """The ids a post-processor puts before and after a single text (TemplateProcessing's
    ``single``; ByteLevel's changes only offsets; Sequence composes)."""
    if spec is None:
        return [], []
    f = Fields(spec, file, where)
    kind = f.take("type", str)
    if kind == "ByteLevel":
        f.ignore("add_prefix_space", "trim_offsets", "use_regex")
        f.done()
        return [], []
    if kind == "Sequence":
        before, after = [], []
        for n, p in enumerate(f.take("processors", list)):
            b, a = template(p, file, f"{where}.processors[{n}]")
            before, after = b + before, after + a
        f.done()
        return before, after
    if kind != "TemplateProcessing":
        raise refuse(file, f.sub("type"), kind, "this post-processor is not implemented")
    f.ignore("pair")  # a pair of texts: not encoded here
    specials = f.take("special_tokens", dict)
    pieces = f.take("single", list)
    f.done()
    kinds = [next(iter(p), None) if isinstance(p, dict) and len(p) == 1 else None for p in pieces]
    if kinds.count("Sequence") != 1 or not set(kinds) <= {"Sequence", "SpecialToken"}:
        raise refuse(file, f.sub("single"), pieces, "expected one $A among special tokens")
    ids: list[list[int]] = [[], []]
    side = 0
    for n, (k, piece) in enumerate(zip(kinds, pieces)):
        p = Fields(piece[k], file, f"{where}.single[{n}].{k}")
        name = p.take("id", str)
        p.ignore("type_id")
        p.done()
        if k == "Sequence":
            if name != "A":
                raise refuse(file, p.sub("id"), name, "a single text is $A")
            side = 1
            continue
        token = Fields(specials.get(name), file, f"{where}.special_tokens[{name!r}]")
        token_ids = token.take("ids", list)
        token.ignore("id", "tokens")
        token.done()
        if not all(type(i) is int and i >= 0 for i in token_ids):
            raise refuse(file, token.sub("ids"), token_ids, "expected ids >= 0")
        ids[side] += token_ids
    return ids[0], ids[1]
