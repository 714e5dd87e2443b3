#!/usr/bin/python3
"""Reference byte-level BPE encoder, written straight from GPT-2's algorithm.

It is independent of the Go tokenizer in tokenizer/ and checks it: given a
Hugging Face folder's vocab.json and merges.txt and a text file, it writes
the ids of every line of the text (and of the whole text) as JSON:

    scripts/bpe_reference.py --dir tokenizer/testdata/strops \
        --corpus tokenizer/testdata/corpus.txt \
        -o tokenizer/testdata/strops/expected.json

Pre-tokenization is GPT-2's regex
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
rebuilt for Python's re (which lacks \\p{..}) from unicodedata categories;
\\s is Unicode's White_Space property. Standard library only.
"""

import argparse
import json
import re
import sys
import unicodedata

# Unicode White_Space (as Go's unicode.IsSpace and the regex engines GPT-2
# and tiktoken use); Python's str.isspace also counts U+001C..U+001F.
WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0),
               (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029),
               (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]


def _ranges(pred):
    """Code point ranges [(lo, hi)] where pred(category) holds."""
    out = []
    start = None
    for cp in range(0x110000):
        ok = pred(unicodedata.category(chr(cp)))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


def _klass(ranges, negate=False):
    parts = []
    for lo, hi in ranges:
        if lo == hi:
            parts.append("\\U%08x" % lo)
        else:
            parts.append("\\U%08x-\\U%08x" % (lo, hi))
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def gpt2_pattern():
    letters = _ranges(lambda c: c.startswith("L"))
    numbers = _ranges(lambda c: c.startswith("N"))
    L = _klass(letters)
    N = _klass(numbers)
    S = _klass(WHITE_SPACE)
    not_s = _klass(WHITE_SPACE, negate=True)
    other = _klass(WHITE_SPACE + letters + numbers, negate=True)
    return re.compile(
        "'s|'t|'re|'ve|'m|'ll|'d"
        "| ?" + L + "+"
        "| ?" + N + "+"
        "| ?" + other + "+"
        "|" + S + "+(?!" + not_s + ")"
        "|" + S + "+")


def bytes_to_unicode():
    """GPT-2's table: each byte maps to a printable character."""
    keep = list(range(ord("!"), ord("~") + 1)) + \
        list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Encoder:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.byte_char = bytes_to_unicode()
        self.pattern = gpt2_pattern()
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = set(zip(parts, parts[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def encode(self, text):
        ids = []
        for piece in self.pattern.findall(text):
            word = "".join(self.byte_char[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[t] for t in self.bpe(word))
        return ids


def load(folder):
    with open(folder + "/vocab.json", encoding="utf-8") as f:
        vocab = json.load(f)
    merges = []
    with open(folder + "/merges.txt", encoding="utf-8") as f:
        for n, line in enumerate(f.read().split("\n")):
            if (n == 0 and line.startswith("#version")) or line == "":
                continue
            a, b = line.split(" ")
            merges.append((a, b))
    return Encoder(vocab, merges)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="folder with vocab.json and merges.txt")
    ap.add_argument("--corpus", required=True, help="UTF-8 text file")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    enc = load(args.dir)
    with open(args.corpus, "rb") as f:
        text = f.read().decode("utf-8")
    texts = text.splitlines(keepends=True) + [text]
    cases = [{"text": t, "ids": enc.encode(t)} for t in texts]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"generator": "scripts/bpe_reference.py", "cases": cases}, f,
                  ensure_ascii=False, indent=0)
        f.write("\n")
    print("%s: %d texts, %d ids" % (args.out, len(cases), sum(len(c["ids"]) for c in cases)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
