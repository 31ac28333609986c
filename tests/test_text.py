"""jaxrnn.text and jaxrnn.models.embed: readers, vocabulary, bucketing, scorers, char features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import text
from jaxrnn.models import embed


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    return p


def conll(rows):
    return "".join("\t".join(r) + "\n" if r else "\n" for r in rows)


def tok(i, form, upos="X", xpos="_"):
    return [str(i), form, "_", upos, xpos, "_", "0", "root", "_", "_"]


# --------------------------------------------------------------------------- readers

def test_read_conllu_skips_multiword_tokens_and_empty_nodes(tmp_path):
    p = write(tmp_path, "a.conllu", "# sent_id = 1\n# text = I don't.\n" + conll([
        tok(1, "I", "PRON", "PRP"),
        ["2-3", "don't", "_", "_", "_", "_", "_", "_", "_", "_"],
        tok(2, "do", "AUX", "VBP"), tok(3, "n't", "PART", "RB"),
        ["3.1", "go", "go", "VERB", "VB", "_", "_", "_", "0:root", "_"],
        tok(4, ".", "PUNCT", "."), [],
        tok(1, "Hi", "INTJ", "UH"), []]))
    s = text.read_conllu(p)
    assert [x.tokens for x in s] == [("I", "do", "n't", "."), ("Hi",)]
    assert s[0].tags == ("PRON", "AUX", "PART", "PUNCT")
    assert s[0].line == 3 and s[1].line == 10
    assert text.read_conllu(p, column="xpos")[0].tags == ("PRP", "VBP", "RB", ".")


def test_read_conllx_and_malformed_lines(tmp_path):
    p = write(tmp_path, "a.conll", conll([tok(1, "看似"), tok(2, "简单"), [], tok(1, "好")]))
    assert [s.tokens for s in text.read_conllx(p)] == [("看似", "简单"), ("好",)]
    cases = {
        "fields": (conll([tok(1, "a"), tok(2, "b")[:7]]), 2, "10 tab-separated"),
        "order": (conll([tok(1, "a"), tok(3, "b")]), 2, "out of order"),
        "id": (conll([tok(1, "a"), ["x"] + tok(2, "b")[1:]]), 2, "bad token id"),
        "form": (conll([tok(1, "")]), 1, "empty FORM"),
    }
    for name, (content, line, msg) in cases.items():
        bad = write(tmp_path, f"{name}.conll", content)
        with pytest.raises(text.FormatError, match=rf"{name}\.conll:{line}: .*{msg}"):
            text.read_conllx(bad)
    # CoNLL-X has no multiword ranges or comments
    bad = write(tmp_path, "range.conll", conll([["1-2"] + tok(1, "ab")[1:]]))
    with pytest.raises(text.FormatError, match=r"range\.conll:1:"):
        text.read_conllx(bad)
    bad = write(tmp_path, "late.conllu", conll([tok(1, "a")]) + "# comment\n")
    with pytest.raises(text.FormatError, match=r"late\.conllu:2: comment line inside"):
        text.read_conllu(bad)


def test_read_columns_and_chars(tmp_path):
    # blank and whitespace-only lines both end a sentence (wnut17 train has both)
    p = write(tmp_path, "a.bio", "Empire\tB-location\nState\tI-location\n\t\n"
                                 "is\tO\n\nbig\tO\n")
    s = text.read_columns(p)
    assert [x.tokens for x in s] == [("Empire", "State"), ("is",), ("big",)]
    assert s[0].tags == ("B-location", "I-location") and s[2].line == 6
    with pytest.raises(text.FormatError, match=r"b\.bio:2: expected 'token<TAB>tag'"):
        text.read_columns(write(tmp_path, "b.bio", "a\tO\nb\tO\textra\n"))
    with pytest.raises(text.FormatError, match=r"c\.bio:1: tag 'X-PER'"):
        text.read_columns(write(tmp_path, "c.bio", "a\tX-PER\n"))
    w = write(tmp_path, "w.txt", "科0\tB-ORG.NAM\n技1\tI-ORG.NAM\n00\tO\n\ufffd\ufffd0\tO\n\n好\tO\n")
    s = text.read_chars(w)
    # "00" is the character 0 at position 0; two U+FFFD are an emoji broken in the published file
    assert s[0].tokens == ("科", "技", "0", "\ufffd\ufffd") and s[1].tokens == ("好",)
    assert text.read_chars(w, keep_positions=True)[0].tokens[:2] == (("科", 0), ("技", 1))
    with pytest.raises(text.FormatError, match=r"x\.txt:2: expected one character"):
        text.read_chars(write(tmp_path, "x.txt", "a0\tO\nab\tO\n"))


# --------------------------------------------------------------------------- vocabulary

def test_vocab_min_count_unknown_and_dropout():
    v = text.Vocab.build("b a b c b a".split(), min_count=2)
    assert v.itos == ["<pad>", "<unk>", "b", "a"]            # by count, then first seen
    assert list(v.encode(["a", "zzz", "b"])) == [3, 1, 2]
    assert v.decode([2, 3]) == ["b", "a"] and list(v.counts) == [0, 0, 3, 2]
    np.testing.assert_allclose(v.dropout_probs(1.0), [0, 0, 1 / 4, 1 / 3], rtol=1e-6)
    tags = text.Vocab(["O", "B-X"], specials=())
    assert tags["B-X"] == 1
    with pytest.raises(KeyError, match="I-X"):
        tags["I-X"]


# --------------------------------------------------------------------------- batching

def test_pad_and_buckets():
    out = text.pad([np.array([1, 2]), np.array([3])], 4)
    np.testing.assert_array_equal(out, [[1, 2, 0, 0], [3, 0, 0, 0]])
    b = text.bucket_boundaries(200, 8, 1.3)
    assert b[0] == 8 and b[-1] >= 200 and all(x % 8 == 0 for x in b)
    assert all(y > x for x, y in zip(b, b[1:]))
    assert text.bucket_length(9, b) == 16 and text.bucket_length(500, [8, 16]) == 512


def test_bucket_sampler_is_a_pure_function_of_the_step():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=103)
    bounds = text.bucket_boundaries(60)
    s1 = text.BucketSampler(lengths, 10, bounds, seed=3)
    s2 = text.BucketSampler(lengths, 10, bounds, seed=3)
    assert s1.batches_per_epoch == 11
    epoch = [s1.batch(i) for i in range(11)]
    idx = np.concatenate([e[0] for e in epoch])
    assert sorted(idx[idx >= 0]) == list(range(103)) and (idx < 0).sum() == 7
    for i, T in epoch:                                        # padded length covers the batch
        assert T in bounds and lengths[i[i >= 0]].max() <= T
    # out of order and across epochs: same answer as a fresh sampler
    for step in (25, 3, 11, 0, 24):
        a, b = s1.batch(step), s2.batch(step)
        np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(s1.plan(0), s1.plan(1))
    # batches group similar lengths: little padding
    waste = sum(T * len(i) - lengths[i[i >= 0]].sum() for i, T in epoch)
    assert waste < 0.5 * lengths.sum()


# --------------------------------------------------------------------------- scorers

def test_bmes_round_trip_and_invalid_tags():
    words = ["看似", "简单", ",", "亲朋好友"]
    tags = text.words_to_bmes(words)
    assert tags == ["B", "E", "B", "E", "S", "B", "M", "M", "E"]
    assert text.bmes_to_words("".join(words), tags) == words
    # invalid sequences still give a segmentation: M after S starts a word, B after B too
    assert text.bmes_to_words("abcd", ["S", "M", "B", "B"]) == ["a", "b", "c", "d"]
    assert text.bmes_to_words("abc", ["B", "M", "M"]) == ["abc"]


def test_segmentation_prf_by_hand():
    gold = [["中国", "人民", "好"], ["我"]]
    pred = [["中国人", "民", "好"], ["我"]]
    # spans: gold {(0,2),(2,4),(4,5),(0,1)}, pred {(0,3),(3,4),(4,5),(0,1)}: 2 correct of 4 / 4
    out = text.segmentation_prf(gold, pred)
    assert out == pytest.approx({"precision": 50.0, "recall": 50.0, "f1": 50.0})
    out = text.segmentation_prf([["ab", "c"]], [["a", "b", "c"]])   # 1 of 3 pred, 1 of 2 gold
    assert out["precision"] == pytest.approx(100 / 3) and out["recall"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(40.0)
    with pytest.raises(ValueError, match="do not spell"):
        text.segmentation_prf([["ab"]], [["ac"]])


def test_tag_accuracy_by_hand():
    assert text.tag_accuracy([["A", "B"], ["C"]], [["A", "C"], ["C"]]) == {
        "accuracy": pytest.approx(200 / 3)}


def test_chunks_follow_conlleval():
    assert text.chunks(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    # I- after O (or after another type) starts a chunk; a type change ends one
    assert text.chunks(["O", "I-PER", "I-PER", "I-LOC"]) == [("PER", 1, 3), ("LOC", 3, 4)]
    assert text.chunks(["B-PER", "B-PER"]) == [("PER", 0, 1), ("PER", 1, 2)]
    assert text.chunks(["B-creative-work", "I-creative-work"]) == [("creative-work", 0, 2)]
    assert text.chunks(["S-X", "B-Y", "E-Y", "O"]) == [("X", 0, 1), ("Y", 1, 3)]   # BIOES


def test_entity_prf_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG"]]
    # gold: PER(0,2) LOC(3,4) ORG(0,1); pred: PER(0,2) ORG(3,4) ORG(0,2): 1 correct
    out = text.entity_prf(gold, pred)
    assert out["precision"] == pytest.approx(100 / 3) and out["recall"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(100 / 3)
    assert out["f1_PER"] == pytest.approx(100.0) and out["f1_LOC"] == 0.0
    assert out["accuracy"] == pytest.approx(400 / 6)
    assert text.entity_prf([["O"]], [["O"]])["f1"] == 0.0


# --------------------------------------------------------------------------- features

def test_embedding_word_dropout():
    f = embed.embedding(5, 3, unk_id=1, dropout_probs=np.array([0, 0, 1, 0, 0], np.float32))
    p = f.init(jax.random.PRNGKey(0))
    ids = jnp.array([2, 3, 2])
    np.testing.assert_array_equal(f.apply(p, ids), p[ids])
    np.testing.assert_array_equal(f.apply(p, ids, key=jax.random.PRNGKey(1)), p[jnp.array([1, 3, 1])])


@pytest.mark.parametrize("make", [lambda: embed.char_cnn(10, 4, 6, 3),
                                  lambda: embed.char_bilstm(10, 4, 3)])
def test_char_features_ignore_padding(make):
    f = make()
    p = f.init(jax.random.PRNGKey(0))
    apply = jax.jit(f.apply)
    word = jnp.array([3, 4, 5, 0, 0, 0])
    other_pad = jnp.array([3, 4, 5, 7, 8, 9])               # garbage beyond the length
    a = apply(p, word, 3)
    assert a.shape == (f.output_size,)
    np.testing.assert_allclose(a, apply(p, other_pad, 3), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a, apply(p, word[:3], 3), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(apply(p, word, 0), np.zeros(f.output_size))
    g = jax.jit(jax.grad(lambda q: jnp.sum(jax.vmap(lambda w, n: f.apply(q, w, n))(
        jnp.stack([word, word]), jnp.array([3, 0])))))(p)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(g))


def test_char_input_normalization_and_bigrams():
    from jaxrnn.models.tagger import CharInput, TaggerConfig
    inp = CharInput([list("年2015ＡＢ")], TaggerConfig(bigram_size=4, char_classes=True))
    x = inp.encode(list("年3ｃ"))           # NFKC: full-width to ASCII; then digit and letter classes
    assert inp.chars.decode(x["uni"]) == ["年", "0", "a"]
    assert inp.bigrams.decode(x["bi_l"]) == ["<s>年", "年0", "0a"]
    assert inp.bigrams.decode(x["bi_r"]) == ["年0", "0a", "a</s>"]
    plain = CharInput([list("ab")], TaggerConfig())
    assert plain.chars.decode(plain.encode(list("ac"))["uni"]) == ["a", "<unk>"]


def _lexicon_bits_by_definition(chars, lexicon, max_len):
    """Reference: per character, for each L, does some lexicon word of length L start here,
    end here, or cover it strictly inside (every span checked against the definition)."""
    n = len(chars)
    rows = []
    for i in range(n):
        row = []
        for L in range(2, max_len + 1):
            spans = [(a, a + L) for a in range(n - L + 1) if "".join(chars[a:a + L]) in lexicon]
            row += [any(a == i for a, _ in spans), any(b - 1 == i for _, b in spans),
                    any(a < i < b - 1 for a, b in spans)]
        rows.append(row)
    return np.array(rows, np.float32).reshape(n, 3 * (max_len - 1))


def test_char_input_lexicon_bits_and_jackknife_folds():
    from jaxrnn.models.tagger import CharInput, TaggerConfig
    words = [["我", "爱", "北京"], ["北京", "大学"], ["天安门", "广场"], ["北京大学", "很", "大"]]
    chars = [list("".join(w)) for w in words]
    cfg = TaggerConfig(lexicon_max_len=4, lexicon_folds=2)
    inp = CharInput(chars, cfg, words=words)
    assert inp.lexicon == {"北京", "大学", "天安门", "广场", "北京大学"}
    # fold of sentence j is j % 2: sentence 1 must not see its own words (大学 only there)
    assert inp.fold_lexicons[1] == {"北京", "天安门", "广场"}
    assert inp.fold_lexicons[0] == {"北京", "大学", "北京大学"}
    assert inp.output_size == cfg.embed_size + 3 * 3
    text = list("我在北京大学天安门广场")
    np.testing.assert_array_equal(inp.encode(text)["lex"],
                                  _lexicon_bits_by_definition(text, inp.lexicon, 4))
    np.testing.assert_array_equal(inp.encode(chars[1], train_index=1)["lex"],
                                  _lexicon_bits_by_definition(chars[1], inp.fold_lexicons[1], 4))
    batch = inp.collate([inp.encode(text), None], 16)
    assert batch["lex"].dtype == np.float32 and batch["lex"].shape == (2, 16, 9)
    assert not batch["lex"][:, len(text):].any() and not batch["lex"][1].any()
    with pytest.raises(ValueError, match="gold words"):
        CharInput(chars, cfg)
    with pytest.raises(ValueError, match="lexicon_max_len must be >= 2"):
        CharInput(chars, TaggerConfig(lexicon_max_len=1), words=words)
