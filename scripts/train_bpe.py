#!/usr/bin/python3
"""Train a small byte-level BPE and write it as a Hugging Face tokenizer folder.

    scripts/train_bpe.py -o tokenizer/testdata/strops            # the strops fixture
    scripts/train_bpe.py --gpt2 DIR -o OUT                       # tokenizer.json of GPT-2

The first form generates its own corpus: demo-task lines ("reverse abc=cba",
"upper xyz=XYZ", "sort hello=ehllo", "double ab=abab", as tasks/strops.go
makes them) mixed with English, trains merges by pair frequency until the
vocabulary has --size tokens (256 byte tokens, the merges, and
"<|endoftext|>" as the last id), and writes vocab.json, merges.txt,
tokenizer.json, tokenizer_config.json and special_tokens_map.json.

The second form reads GPT-2's vocab.json and merges.txt from DIR and writes
the same vocabulary as OUT/tokenizer.json, so that both readers of the Go
tokenizer can be tested on GPT-2. Standard library only; deterministic.
"""

import argparse
import collections
import json
import os
import random

from bpe_reference import bytes_to_unicode, gpt2_pattern

EOT = "<|endoftext|>"

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Reverse the letters of the word, then write it after the equals sign.",
    "It's a small task: we'll sort the letters and they're done.",
    "Instruction: upper the word. Response: the same word in capitals.",
    "She said she'd double it, and I've checked that it's right.",
    "Numbers like 42 and 2024 appear, as do commas, dots and colons.",
    "A model that learns this well can follow short instructions.",
]


def strops_line(rng):
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 5)))
    op = rng.choice(["reverse", "upper", "sort", "double"])
    answer = {"reverse": word[::-1], "upper": word.upper(),
              "sort": "".join(sorted(word)), "double": word + word}[op]
    return "%s %s=%s" % (op, word, answer)


def corpus(seed, lines):
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        out.append(rng.choice(ENGLISH) if i % 4 == 3 else strops_line(rng))
    return "\n".join(out) + "\n"


def train(text, size):
    byte_char = bytes_to_unicode()
    words = collections.Counter()
    for piece in gpt2_pattern().findall(text):
        words[tuple(byte_char[b] for b in piece.encode("utf-8"))] += 1
    vocab = {byte_char[b]: b for b in range(256)}
    merges = []
    while len(vocab) < size - 1:
        pairs = collections.Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        if not pairs:
            break
        # most frequent; ties go to the smallest pair, so runs repeat
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        vocab[best[0] + best[1]] = len(vocab)
        merged = collections.Counter()
        for word, n in words.items():
            out = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    vocab[EOT] = len(vocab)
    return vocab, merges


def tokenizer_json(vocab, merges, eot_id, pair_form):
    added = {"id": eot_id, "content": EOT, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": True, "special": True}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": "", "end_of_word_suffix": "",
            "fuse_unk": False, "byte_fallback": False,
            "vocab": vocab,
            "merges": [list(m) if pair_form else "%s %s" % m for m in merges],
        },
    }


def write_json(path, obj, indent=None):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def write_merges(path, merges):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", required=True, help="folder to write")
    ap.add_argument("--size", type=int, default=400, help="vocabulary size, <|endoftext|> included")
    ap.add_argument("--lines", type=int, default=4000, help="corpus lines to generate")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gpt2", help="folder with GPT-2's vocab.json and merges.txt: write only its tokenizer.json")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    if args.gpt2:
        with open(os.path.join(args.gpt2, "vocab.json"), encoding="utf-8") as f:
            vocab = json.load(f)
        with open(os.path.join(args.gpt2, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(l.split(" ")) for l in lines[1:] if l]
        write_json(os.path.join(args.out, "tokenizer.json"),
                   tokenizer_json(vocab, merges, vocab[EOT], pair_form=False))
        return

    vocab, merges = train(corpus(args.seed, args.lines), args.size)
    eot_id = vocab[EOT]
    write_json(os.path.join(args.out, "vocab.json"), vocab)
    write_merges(os.path.join(args.out, "merges.txt"), merges)
    write_json(os.path.join(args.out, "tokenizer.json"),
               tokenizer_json(vocab, merges, eot_id, pair_form=True))
    write_json(os.path.join(args.out, "tokenizer_config.json"), {
        "model_max_length": 1024,
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": False,
        "eos_token": {"content": EOT, "special": True},
        "bos_token": EOT,
        "added_tokens_decoder": {str(eot_id): {"content": EOT, "special": True}},
    }, indent=2)
    write_json(os.path.join(args.out, "special_tokens_map.json"),
               {"eos_token": EOT, "bos_token": EOT, "unk_token": EOT}, indent=2)
    print("%s: %d tokens, %d merges" % (args.out, len(vocab), len(merges)))


if __name__ == "__main__":
    main()
