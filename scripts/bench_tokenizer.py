"""Benchmark jaxformer's tokenizer against tiktoken, HF tokenizers and a naive trainer.

    .venv/bin/python scripts/bench_tokenizer.py [--repeats 5] [--naive-merges 3]

Encode: MB/s on each shared corpus with the GPT-2 ranks, all single-threaded: tiktoken's
``encode_ordinary``; HF ``tokenizers`` with a byte-level BPE built from the same ranks
(merges derived from the ranks; its ids are checked equal to tiktoken's); jaxformer with a
cold cache (a fresh Tokenizer per run) and a warm one (the same text again).
Train: vocab 8192 (one special token) on the first 5 MB of shakespeare.txt: jaxformer;
HF's BpeTrainer with RAYON_NUM_THREADS=1; and two naive trainers that recount before every
merge, timed for a few merges and extrapolated per merge to all 7935 (stated as such):
"corpus" recounts every pair of the whole corpus (minbpe style), "words" recounts the pairs
of the unique pre-tokens weighted by count. Times are medians of ``--repeats`` runs.
"""

import argparse
import os

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers starts its thread pool
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import statistics  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import tokenizers  # noqa: E402
from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: E402

from jaxformer.tokenizer import ENDOFTEXT, GPT2, Tokenizer  # noqa: E402
from jaxformer.tokenizer.count import count_pretokens  # noqa: E402
from jaxformer.tokenizer.patterns import compile_pattern  # noqa: E402

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
VOCAB, TRAIN_CHARS = 8192, 5_000_000


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def byte_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte, the alphabet of HF's ByteLevel."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra = iter(range(256, 512))
    return {b: chr(b if b in keep else next(extra)) for b in range(256)}


def last_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The pair that BPE joins last when it encodes ``token`` with the ranks below its own."""
    limit = ranks[token]
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        pair_ranks = [min(ranks.get(a + b, limit), limit) for a, b in zip(parts, parts[1:])]
        i = pair_ranks.index(min(pair_ranks))
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts[0], parts[1]


def hf_from_ranks(ranks: dict[bytes, int]) -> tokenizers.Tokenizer:
    """HF byte-level BPE with the same map: merges in rank order, derived from the ranks."""
    char = byte_unicode()
    text = lambda token: "".join(char[b] for b in token)
    by_rank = sorted(ranks, key=ranks.__getitem__)
    merges = [tuple(map(text, last_merge(token, ranks))) for token in by_rank if len(token) > 1]
    hf = tokenizers.Tokenizer(models.BPE({text(t): r for t, r in ranks.items()}, merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    return hf


def bench_encode(repeats: int) -> list[tuple[str, str, float, float]]:
    tok = Tokenizer.from_tiktoken_file(SHARED / "vocab" / "gpt2.tiktoken")
    enc = tok.to_tiktoken("gpt2")
    hf = hf_from_ranks(dict(tok.mergeable_ranks))
    rows = []
    for path in sorted((SHARED / "corpora").glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        ids = enc.encode_ordinary(text)
        assert tok.encode_ordinary(text) == ids and hf.encode(text).ids == ids, path.name
        times = encode_times(text, tok, enc, hf, repeats)
        for name, seconds in times.items():
            mbps = len(text.encode()) / 1e6 / seconds
            rows.append((path.name, name, mbps, times["tiktoken"] / seconds))
    return rows


def encode_times(text, tok, enc, hf, repeats: int) -> dict[str, float]:
    fresh = lambda: Tokenizer(tok.mergeable_ranks, tok.pattern, tok.special_tokens)
    return {
        "tiktoken": median_time(lambda: enc.encode_ordinary(text), repeats),
        "HF tokenizers": median_time(lambda: hf.encode(text), repeats),
        "jaxformer, cold cache": median_time(lambda: fresh().encode_ordinary(text), repeats),
        "jaxformer, warm cache": median_time(lambda: tok.encode_ordinary(text), repeats),
    }


def naive_corpus(text: str, merges: int) -> float:
    """Seconds per merge of the minbpe-style trainer: recount all pairs of the whole corpus."""
    ids = [list(piece.encode()) for piece in compile_pattern(GPT2).findall(text)]
    start = time.perf_counter()
    for z in range(256, 256 + merges):
        pairs = Counter()
        for chunk in ids:
            pairs.update(zip(chunk, chunk[1:]))
        a, b = max(pairs, key=pairs.__getitem__)
        ids = [_replace(chunk, a, b, z) for chunk in ids]
    return (time.perf_counter() - start) / merges


def naive_words(counts: Counter, merges: int) -> float:
    """Seconds per merge when recounting the pairs of the unique pre-tokens, weighted."""
    words = {tuple(word): c for word, c in counts.items()}
    start = time.perf_counter()
    for z in range(256, 256 + merges):
        pairs = Counter()
        for word, c in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += c
        a, b = max(pairs, key=pairs.__getitem__)
        words = {tuple(_replace(list(word), a, b, z)): c for word, c in words.items()}
    return (time.perf_counter() - start) / merges


def _replace(word: list[int], a: int, b: int, z: int) -> list[int]:
    out, i = [], 0
    while i < len(word):
        if word[i] == a and i + 1 < len(word) and word[i + 1] == b:
            out.append(z)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def bench_train(repeats: int, naive_merges: int) -> list[tuple[str, float, str]]:
    text = (SHARED / "corpora" / "shakespeare.txt").read_text(encoding="utf-8")[:TRAIN_CHARS]
    n_merges = VOCAB - 256 - 1

    def hf_train():
        hf = tokenizers.Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB,
            special_tokens=[ENDOFTEXT],
            initial_alphabet=alphabet,
            show_progress=False,
        )
        hf.train_from_iterator([text], trainer)

    ours = median_time(lambda: Tokenizer.train(text, VOCAB, "gpt2", (ENDOFTEXT,)), repeats)
    start = time.perf_counter()
    counts = count_pretokens([text], GPT2)  # the naive trainers need pre-tokens too
    count_s = time.perf_counter() - start
    corpus = count_s + n_merges * naive_corpus(text, naive_merges)
    words = count_s + n_merges * naive_words(counts, 10 * naive_merges)
    return [
        ("jaxformer", ours, "measured"),
        ("HF tokenizers (1 thread)", median_time(hf_train, repeats), "measured"),
        ("naive, recount words", words, f"{10 * naive_merges} merges, extrapolated"),
        ("naive, recount corpus", corpus, f"{naive_merges} merges, extrapolated"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--naive-merges", type=int, default=3)
    args = parser.parse_args()
    print(f"## Encode, GPT-2 ranks, one thread (MB/s, median of {args.repeats})\n")
    print("| corpus | encoder | MB/s | × tiktoken |\n|---|---|---:|---:|")
    for corpus, name, mbps, ratio in bench_encode(args.repeats):
        print(f"| {corpus} | {name} | {mbps:.2f} | {ratio:.2f} |")
    print(f"\n## Train, vocab {VOCAB} on 5 MB of shakespeare.txt (s, median of {args.repeats})\n")
    print("| trainer | seconds | × jaxformer | how |\n|---|---:|---:|---|")
    rows = bench_train(args.repeats, args.naive_merges)
    for name, seconds, how in rows:
        print(f"| {name} | {seconds:.1f} | {seconds / rows[0][1]:.2f} | {how} |")


if __name__ == "__main__":
    main()
