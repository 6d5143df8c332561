"""``Tokenizer.from_hf`` encodes and decodes exactly as HF ``tokenizers`` does.

Every tokenizer here is trained (or built) with the ``tokenizers`` library inside the test,
saved, read back by jaxformer, and compared with the library on many texts: corpus slices,
hand-picked unicode/whitespace/special-token texts and seeded random strings. Nothing is
downloaded; the reference is always ``tokenizers`` itself.
"""

import json
import random
import re
from pathlib import Path

import pytest

tokenizers = pytest.importorskip("tokenizers")

from tokenizers import (  # noqa: E402
    AddedToken,
    Regex,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from jaxformer.interop.tokenizer_json import to_hf_tokenizer_json  # noqa: E402
from jaxformer.tokenizer import HFTokenizer, Tokenizer  # noqa: E402

CORPUS = (Path(__file__).resolve().parents[2] / "jaxformer/data/shakespeare.txt").read_text()
UNICODE = (
    "Grüße aus Köln, naïve café! Ελληνικά κείμενα. Русский текст. 日本語のテキスト、中文文本。"
    " 한국어. עברית. العربية. हिन्दी. 👍🏽 👨‍👩‍👧 🎉🎉 e\u0301 n\u0303 ʕaʕ Å Å ﬁ ①\n"
    "I'LL SAY 'TIS 1234567 times\r\n\r\n  trailing  \n\tTabs\tand  spaces   \n"
)
TRAIN = [CORPUS[:40_000], UNICODE * 20]
LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
FRAGMENTS = [
    "'s", "'S", "'ll", "don't", "I'M", "ſ", " ", "  ", "   ", "\n", "\n\n", "\r\n", "\t", " \n ",
    "\x1c", "\x85", "\u2028", "\u00a0", "\u3000", "\u200b", "123", "4567", "１２", "٣", "½",
    "e\u0301", "\u0301", "👍", "🏽", "\u200d", "ʕ", "\U000107bb", "Hello", " world", "▁", "▁▁x",
    "<0x41>", "<unk>", "<s>", "</s>", "<|eot_id|>", "<|begin_of_text|>", "<tool>", " <tool> ",
    "[MASK]", " [MASK]", "café", "ﬁ", "Å", "\x07", "\x00",
]  # fmt: skip


def random_texts(seed: int, n: int = 120) -> list[str]:
    """Seeded random strings: fragments, corpus words and code points from many planes."""
    rng = random.Random(seed)
    words = CORPUS[:20_000].split()

    def char() -> str:
        lo, hi = rng.choice([(32, 127), (0, 32), (0x80, 0x250), (0x370, 0x530), (0x3040, 0x9FFF),
                             (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0x300, 0x370),
                             (0xE000, 0xF8FF), (0x10000, 0x2FFFF), (0x2000, 0x2070)])  # fmt: skip
        return chr(rng.randrange(lo, hi))

    def part() -> str:
        k = rng.random()
        return rng.choice(FRAGMENTS) if k < 0.4 else rng.choice(words) if k < 0.7 else char()

    return ["".join(part() for _ in range(rng.randrange(0, 40))) for _ in range(n)]


TEXTS = [
    "",
    " ",
    "Hello world",
    " Hello  world ",
    UNICODE,
    CORPUS[50_000:53_000],
    "<|begin_of_text|>Hi<|eot_id|><|eot_id|>there<|end_of_text|>",
    "a<tool>b <tool> c  <tool>  d",
    "x [MASK] y[MASK]z",
    "\n\n\n   \t\t  \r\n",
    "99999999 3.14159 1,000,000",
    "é\x07a ¤¤ 𝔘𝔫𝔦",
]


def assert_same(ours: HFTokenizer, hf, texts: list[str]) -> None:
    for text in texts:
        ids = hf.encode(text).ids
        assert ours.encode(text) == ids, text
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip), text


def reload(hf, tmp_path: Path, name: str = "tokenizer.json"):
    """Save ``hf`` and read it back with both libraries."""
    path = tmp_path / name
    hf.save(str(path))
    return Tokenizer.from_hf(path), tokenizers.Tokenizer.from_file(str(path))


# -- byte-level BPE: GPT-2, Llama 3, Qwen, OLMo, Phi -----------------------------------------


def byte_level(
    pre, *, ignore_merges=False, alphabet=True, normalizer=None, specials=(), vocab_size=700
):
    hf = tokenizers.Tokenizer(models.BPE(ignore_merges=ignore_merges))
    hf.normalizer = normalizer
    hf.pre_tokenizer = pre
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if alphabet else [],
        show_progress=False,
    )
    hf.train_from_iterator(TRAIN, trainer)
    return hf


def llama3_pre(add_prefix_space=False):
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=False),
    ])  # fmt: skip


def with_bos(hf, bos="<|begin_of_text|>", eos=None):
    single = f"{bos} $A" + (f" {eos}" if eos else "")
    ids = [(t, hf.token_to_id(t)) for t in (bos, eos) if t]
    hf.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=single, special_tokens=ids),
    ])  # fmt: skip
    return hf


BYTE_LEVEL = {
    "gpt2": lambda: byte_level(pre_tokenizers.ByteLevel(add_prefix_space=False),
                               specials=["<|endoftext|>"]),
    "roberta-prefix-space-no-alphabet": lambda: byte_level(
        pre_tokenizers.ByteLevel(add_prefix_space=True), alphabet=False),
    "llama3-ignore-merges-bos": lambda: with_bos(byte_level(
        llama3_pre(), ignore_merges=True, specials=SPECIALS)),
    "llama3-bos-eos": lambda: with_bos(byte_level(llama3_pre(), specials=SPECIALS),
                                       eos="<|end_of_text|>"),
    "qwen-nfc": lambda: byte_level(llama3_pre(), normalizer=normalizers.NFC(),
                                   specials=["<|endoftext|>", "<|im_start|>"]),
    "split-contiguous-then-bytelevel-regex": lambda: byte_level(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}"), "contiguous"),
        pre_tokenizers.Split(" ", "merged_with_next"),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)])),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(BYTE_LEVEL))
def byte_level_pair(request, tmp_path_factory):
    hf = BYTE_LEVEL[request.param]()
    return reload(hf, tmp_path_factory.mktemp(request.param))


def test_byte_level_encodings_equal_tokenizers(byte_level_pair):
    ours, hf = byte_level_pair
    assert_same(ours, hf, TEXTS + FRAGMENTS + random_texts(1))
    assert ours.n_vocab == hf.get_vocab_size()


def test_byte_level_decode_inverts_encode(byte_level_pair):
    ours, hf = byte_level_pair
    for text in TEXTS[2:] + random_texts(2, 40):
        ids = ours.encode(text)
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids)
        if hf.decode(ids) == text:  # no prefix space, no dropped chars: HF inverts too
            assert ours.decode(ids, skip_special_tokens=True) == text


def test_added_tokens_special_normalized_lstrip_rstrip(tmp_path):
    hf = with_bos(byte_level(llama3_pre(), specials=SPECIALS, normalizer=normalizers.NFC()))
    hf.add_tokens([AddedToken("<tool>", normalized=False), AddedToken("café", normalized=True),
                   AddedToken("Å", normalized=True)])  # fmt: skip
    hf.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=True),
                           AddedToken("<|im", single_word=True, special=True)])  # fmt: skip
    ours, hf = reload(hf, tmp_path)
    texts = TEXTS + ["caf\u00e9 cafe\u0301 A\u030a <|im <|imx x<|im", " [MASK]  [MASK]x"]
    assert_same(ours, hf, texts + random_texts(3))
    assert set(ours.special_tokens) == set(SPECIALS) | {"[MASK]", "<|im"}
    # Special tokens treated as text, as HF's encode_special_tokens=True does.
    hf.encode_special_tokens = True
    for text in texts:
        assert ours.encode(text, allowed_special=()) == hf.encode(text).ids
    with pytest.raises(ValueError, match="disallowed"):
        ours.encode("x<|eot_id|>", disallowed_special="all", allowed_special=())


def test_vocab_and_merges_pair(tmp_path):
    """GPT-2's two files, as ``models.BPE.save`` writes them, read as GPT2TokenizerFast does."""
    trained = byte_level(pre_tokenizers.ByteLevel(add_prefix_space=False),
                         specials=["<|endoftext|>"])  # fmt: skip
    trained.model.save(str(tmp_path))
    vocab, merges = tmp_path / "vocab.json", tmp_path / "merges.txt"
    hf = tokenizers.Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    for path in (tmp_path, vocab, merges):
        assert_same(Tokenizer.from_hf(path), hf, TEXTS + ["<|endoftext|>x"] + random_texts(4, 60))
    ours = Tokenizer.from_hf(tmp_path)
    to_hf_tokenizer_json(ours, tmp_path / "out" / "tokenizer.json")
    exported = tokenizers.Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    for text in TEXTS + random_texts(5, 40):
        assert exported.encode(text).ids == hf.encode(text).ids


# -- SentencePiece-style BPE: Llama 2, Mistral, Gemma ----------------------------------------

SP_SPECIALS = ["<unk>", "<s>", "</s>"]


@pytest.fixture(scope="module")
def sp_model():
    """(vocab, merges) of a ▁-style BPE, laid out as Llama 2's: <unk> <s> </s>, then the
    byte tokens <0x00> … <0xFF>, then the trained tokens."""
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=900, show_progress=False, limit_alphabet=150)
    hf.train_from_iterator(TRAIN, trainer)
    trained = json.loads(hf.to_str())["model"]
    head = SP_SPECIALS + [f"<0x{b:02X}>" for b in range(256)]
    order = sorted(trained["vocab"], key=trained["vocab"].get)
    vocab = {t: i for i, t in enumerate(head + [t for t in order if t not in head])}
    return vocab, [tuple(m) for m in trained["merges"]]


def sp_tokenizer(vocab, merges, *, pre=None, normalizer=None, decoder=None, bos=True,
                 byte_fallback=True, fuse_unk=True, bytes_kept=256):  # fmt: skip
    vocab = {
        t: i
        for t, i in vocab.items()
        if not (t.startswith("<0x") and len(t) == 6 and int(t[3:5], 16) >= bytes_kept)
    }
    vocab = {t: i for i, t in enumerate(sorted(vocab, key=vocab.get))}  # no gaps
    model = models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=byte_fallback,
                       fuse_unk=fuse_unk)  # fmt: skip
    hf = tokenizers.Tokenizer(model)
    hf.normalizer, hf.pre_tokenizer = normalizer, pre
    hf.decoder = decoder or decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(" ", 1, 0)])  # fmt: skip
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SP_SPECIALS])
    if bos:
        hf.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[
            ("<s>", 1)])  # fmt: skip
    return hf


def metaspace(scheme="always", split=True):
    return pre_tokenizers.Metaspace(prepend_scheme=scheme, split=split)


SENTENCEPIECE = {
    "metaspace-always": dict(pre=metaspace("always")),
    "metaspace-first-nosplit-llama2-new": dict(pre=metaspace("first", split=False)),
    "metaspace-never": dict(pre=metaspace("never"), bos=False),
    "metaspace-decoder": dict(pre=metaspace("first"), decoder=decoders.Metaspace(
        prepend_scheme="first")),
    "legacy-prepend-replace": dict(normalizer=normalizers.Sequence([
        normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])),
    "gemma-replace": dict(normalizer=normalizers.Replace(" ", "▁"), decoder=decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])),
    "ascii-bytes-only-fuse-unk": dict(pre=metaspace(), bytes_kept=128),
    "ascii-bytes-only-no-fuse": dict(pre=metaspace(), bytes_kept=128, fuse_unk=False),
    "no-byte-fallback": dict(pre=metaspace(), byte_fallback=False),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(SENTENCEPIECE))
def sp_pair(request, sp_model, tmp_path_factory):
    hf = sp_tokenizer(*sp_model, **SENTENCEPIECE[request.param])
    return reload(hf, tmp_path_factory.mktemp(request.param))


def test_sentencepiece_encodings_equal_tokenizers(sp_pair):
    ours, hf = sp_pair
    quirks = ["é\x07a", "\U0001f600\x07\U0001f600\x07", "▁▁", " ▁ x", "<s><s> </s>"]
    assert_same(ours, hf, TEXTS + FRAGMENTS + quirks + random_texts(6))


def test_sentencepiece_byte_fallback_decodes_bytes(sp_model, tmp_path):
    ours, hf = reload(sp_tokenizer(*sp_model, pre=metaspace("first", split=False)), tmp_path)
    assert {i - 3 for i in ours.encode("🤖")} >= set("🤖".encode())  # <0xNN> is id 3 + NN
    plain = [t for t in random_texts(7, 60) if not any(s in t for s in ("▁", "<", " "))]
    for text in ["🤖 ok", "日本語", "a\x00b", "\U0010fffd", *plain]:
        ids = ours.encode(text)
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids) == text
    assert ours.decode([200, 201]) == hf.decode([200, 201], skip_special_tokens=False)  # bad UTF-8


def test_merge_rule_is_pair_priority(tmp_path):
    """Random merge lists over a tiny alphabet, ids shuffled and tokens reachable by several
    pairs, where the rank-of-concatenation rule (tiktoken's) often disagrees with HF's."""
    rng = random.Random(11)
    for trial in range(30):
        tokens, merges = list("abcd"), []
        while len(merges) < 25:
            a, b = rng.choice(tokens), rng.choice(tokens)
            if [a, b] not in merges and len(a + b) <= 6:
                merges.append([a, b])
                tokens += [a + b] if a + b not in tokens else []
        ids = list(range(len(tokens)))
        rng.shuffle(ids)
        hf = tokenizers.Tokenizer(models.BPE(dict(zip(tokens, ids)), [tuple(m) for m in merges]))
        ours, hf = reload(hf, tmp_path, f"t{trial}.json")
        texts = ["".join(rng.choice("abcd") for _ in range(rng.randrange(1, 80)))
                 for _ in range(40)]  # fmt: skip
        assert_same(ours, hf, texts)


# -- export and refusals ---------------------------------------------------------------------


def test_export_round_trip(byte_level_pair, tmp_path):
    ours, hf = byte_level_pair
    to_hf_tokenizer_json(ours, tmp_path / "tokenizer.json")
    exported = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in TEXTS + random_texts(8, 40):
        assert exported.encode(text).ids == hf.encode(text).ids
    ours.save(tmp_path / "saved")
    assert HFTokenizer.load(tmp_path / "saved") == ours


def test_export_round_trip_sentencepiece(sp_pair, tmp_path):
    ours, hf = sp_pair
    to_hf_tokenizer_json(ours, tmp_path / "tokenizer.json")
    exported = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in TEXTS + random_texts(9, 40):
        assert exported.encode(text).ids == hf.encode(text).ids


@pytest.fixture(scope="module")
def spec():
    hf = tokenizers.Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return json.loads(hf.to_str())


def _set(path: str, value):
    def edit(spec):
        *keys, last = path.split(".")
        obj = spec
        for k in keys:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        obj[last] = value

    return edit


REFUSED = {
    "model.type": _set("model", {"type": "WordPiece", "vocab": {"a": 0}, "unk_token": "a"}),
    "model.type ": _set("model", {"type": "Unigram", "vocab": [["a", 0.0]], "unk_id": 0}),
    "model.dropout": _set("model.dropout", 0.1),
    "model.continuing_subword_prefix": _set("model.continuing_subword_prefix", "##"),
    "model.merges[0]": _set("model.merges", [["a", "c"]]),
    "model.foo": _set("model.foo", 1),
    "normalizer.type": _set("normalizer", {"type": "Lowercase"}),
    "pre_tokenizer.type": _set("pre_tokenizer", {"type": "Whitespace"}),
    "pre_tokenizer.pattern.Regex": _set("pre_tokenizer", {
        "type": "Split", "pattern": {"Regex": r"\h+"}, "behavior": "Isolated", "invert": False}),
    "decoder.type": _set("decoder", {"type": "WordPiece", "prefix": "##", "cleanup": True}),
    "post_processor.type": _set("post_processor", {
        "type": "BertProcessing", "sep": ["b", 1], "cls": ["a", 0]}),
    "truncation": _set("truncation", {"direction": "Right", "max_length": 4, "strategy":
                                      "LongestFirst", "stride": 0}),
    "added_tokens[0].id": _set("added_tokens", [{"id": 7, "content": "<x>", "single_word":
                               False, "lstrip": False, "rstrip": False, "normalized": False,
                               "special": True}]),
    "normalizer.pattern": _set("normalizer", {"type": "Replace", "pattern": {"Regex": " "},
                                              "content": "▁"}),
}  # fmt: skip


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_unimplemented_fields_are_refused(spec, field, tmp_path):
    edited = json.loads(json.dumps(spec))
    REFUSED[field](edited)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(edited))
    with pytest.raises(ValueError, match=rf"tokenizer.json: {re.escape(field.strip())}\S* = .*; "):
        Tokenizer.from_hf(path)


def test_lone_surrogates_are_repaired_as_tokenizer_does(byte_level_pair):
    ours, hf = byte_level_pair  # tokenizers cannot take them; jaxformer repairs to U+FFFD
    assert ours.encode("a\ud800b\ud83d\ude00") == hf.encode("a\ufffdb\U0001f600").ids


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="neither tokenizer.json nor vocab.json"):
        Tokenizer.from_hf(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        Tokenizer.from_hf(tmp_path / "absent")
