"""Training: textbook merges, equal to a naive recount-every-merge trainer, deterministic."""

from collections import Counter

import pytest
from tokenizer_cases import MULTILINGUAL

from jaxformer.tokenizer import ENDOFTEXT, PATTERNS, Tokenizer, count
from jaxformer.tokenizer.count import count_pretokens
from jaxformer.tokenizer.patterns import compile_pattern
from jaxformer.tokenizer.train import learn_merges


def naive_merges(counts: dict[bytes, int], n_merges: int) -> list[bytes]:
    """The definition, run literally: recount every pair of every word before each merge."""
    words = {tuple(bytes([b]) for b in word): c for word, c in counts.items()}
    known, merges = {bytes([b]) for b in range(256)}, []
    while len(merges) < n_merges:
        pairs = Counter()
        for word, c in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += c
        candidates = [pair for pair in pairs if pair[0] + pair[1] not in known]
        if not candidates:
            break
        a, b = min(candidates, key=lambda pair: (-pairs[pair], pair))
        merges.append(a + b)
        known.add(a + b)
        new_words = {}
        for word, c in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i : i + 2] == (a, b):
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] = c
        words = new_words
    return merges


def test_textbook_example():
    # Wikipedia's "aaabdaaabac": aa → Z, then ab → Y, then ZY → X. After the first merge
    # the word is Z a b d Z a b a c, where (Z, a) and (a, b) both occur twice: the tie goes
    # to the lexicographically least byte pair, (b"a", b"b") < (b"aa", b"a"), as the
    # textbook has it.
    tok = Tokenizer.train("aaabdaaabac", 256 + 3, special_tokens=())
    ranks = tok.mergeable_ranks
    assert [ranks[b"aa"], ranks[b"ab"], ranks[b"aaab"]] == [256, 257, 258]
    assert tok.n_vocab == 259
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]


def test_incremental_equals_naive(corpora):
    text = corpora["shakespeare.txt"][:20_000] + MULTILINGUAL * 3
    for pattern in PATTERNS:
        counts = count_pretokens([text], PATTERNS[pattern])
        assert learn_merges(counts, 200) == naive_merges(counts, 200), pattern


def test_ranks_and_special_ids():
    tok = Tokenizer.train(["hello world"] * 5, 256 + 5 + 2, special_tokens=(ENDOFTEXT, "<|x|>"))
    ranks = tok.mergeable_ranks
    assert all(ranks[bytes([b])] == b for b in range(256))
    assert sorted(ranks.values()) == list(range(261))
    assert tok.special_tokens == {ENDOFTEXT: 261, "<|x|>": 262}
    assert tok.n_vocab == 263


def test_special_tokens_are_never_merged_into():
    text = "hello<|endoftext|>world<|endoftext|>" * 200
    tok = Tokenizer.train(text, 256 + 8 + 1, special_tokens=(ENDOFTEXT,))  # 4 + 4 merges
    tokens = set(tok.mergeable_ranks)
    assert b"hello" in tokens and b"world" in tokens
    assert not any(b"<" in t or b"|" in t or b"endoftext" in t for t in tokens if len(t) > 1)
    eot = tok.special_tokens[ENDOFTEXT]
    assert eot == 264
    assert tok.encode(text, allowed_special="all")[:2] == [tok.mergeable_ranks[b"hello"], eot]


def test_merges_do_not_depend_on_order_chunking_or_processes(corpora, monkeypatch):
    docs = [corpora["austen.txt"][:60_000], MULTILINGUAL * 20, corpora["shakespeare.txt"][:60_000]]
    first = Tokenizer.train(docs, 600)
    assert Tokenizer.train(docs[::-1], 600) == first
    monkeypatch.setattr(count, "CHUNK_CHARS", 5_000)  # many chunks, cut at safe newlines
    assert Tokenizer.train(docs, 600) == first
    assert Tokenizer.train(docs, 600, processes=2) == first


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_chunked_counts_equal_whole_text_counts(corpora, monkeypatch, pattern):
    text = corpora["shakespeare.txt"][:200_000] + MULTILINGUAL * 20 + "x\ny  \n\nz!\n!"
    whole = Counter(p.encode() for p in compile_pattern(PATTERNS[pattern]).findall(text))
    monkeypatch.setattr(count, "CHUNK_CHARS", 3_000)
    assert len(list(count.chunks(text, 3_000))) > 50
    assert count_pretokens([text], PATTERNS[pattern]) == whole


def test_train_takes_one_text_or_many():
    assert Tokenizer.train("ab ab ab", 258, special_tokens=()) == Tokenizer.train(
        iter(["ab ab", " ab"]), 258, special_tokens=()
    )


def test_running_out_of_pairs_warns():
    with pytest.warns(UserWarning, match="ran out of pairs after 1 of"):
        tok = Tokenizer.train("ab", 1000, special_tokens=())
    assert tok.n_vocab == 257


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="vocab_size=256 is too small.*at least 257"):
        Tokenizer.train("text", 256)
    with pytest.raises(ValueError, match="at least 256"):
        Tokenizer.train("text", 100, special_tokens=())
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        Tokenizer.train("text", 300.0)
    with pytest.raises(TypeError, match="special_tokens"):
        Tokenizer.train("text", 300, special_tokens=ENDOFTEXT)
    with pytest.raises(ValueError, match="processes"):
        Tokenizer.train("text", 300, processes=0)
    with pytest.raises(TypeError, match="training texts must be str"):
        Tokenizer.train([b"bytes"], 300)
    with pytest.raises(ValueError, match="not a valid regex"):
        Tokenizer.train("text", 300, pattern="(unclosed")
