#!/usr/bin/python3
"""gpt2_corpus.py SEED.txt OUT.txt BYTES - a mixed valid-UTF-8 corpus of at
least BYTES bytes, made deterministically from the lines of SEED.txt
(tests/data/gpt2_seed.txt): prose, code, numbers, whitespace runs, several
scripts, CJK and emoji. The GPT-2 tokenizer's parity test
(tests/test_gpt2_bpe.sh) and benchmark (scripts/bench_tokenizer.sh) use it."""
import random, sys
seed = open(sys.argv[1], encoding="utf-8").read().split("\n")
rng = random.Random(20241206)
# letters, marks, digits and symbols of scripts whose Unicode properties have
# not changed for years (PCRE2 10.42 and node's ICU agree on them)
ranges = [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xFF), (0x391, 0x3C9), (0x410, 0x44F),
          (0x5D0, 0x5EA), (0x627, 0x64A), (0x660, 0x669), (0x905, 0x939), (0x966, 0x96F),
          (0xE01, 0xE2E), (0x3041, 0x3096), (0x30A1, 0x30FA), (0x4E00, 0x9FA5),
          (0xAC00, 0xD7A3), (0x1F600, 0x1F64F), (0x1F300, 0x1F5FF), (0x2200, 0x22FF),
          (0x2160, 0x2188), (0x2460, 0x249B), (0xFF01, 0xFF5E)]
punct = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S"]
spaces = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\n ", "\t\t", "\r\n", "\u00a0", "\u3000",
          "\u2003", " \t \n  "]
def rchar():
    lo, hi = rng.choice(ranges)
    return chr(rng.randint(lo, hi))
def word():
    k = rng.random()
    if k < 0.4: return "".join(rchar() for _ in range(rng.randint(1, 8)))
    if k < 0.6: return str(rng.randint(0, 10 ** rng.randint(1, 12)))
    if k < 0.8: return "".join(rng.choice(punct) for _ in range(rng.randint(1, 4)))
    return rng.choice(" ".join(seed).split() or ["x"])
out, size = [], 0
target = int(sys.argv[3])
while size < target:
    k = rng.random()
    if k < 0.5:   # seed lines, as they are
        piece = "\n".join(rng.choice(seed) for _ in range(rng.randint(1, 6))) + "\n"
    elif k < 0.8: # words glued by whitespace runs
        piece = "".join(word() + rng.choice(spaces) for _ in range(rng.randint(3, 30)))
    else:         # a seed line with its spaces replaced by random runs
        piece = "".join(c if c != " " else rng.choice(spaces) for c in rng.choice(seed)) + "\n"
    out.append(piece)
    size += len(piece.encode("utf-8"))
open(sys.argv[2], "w", encoding="utf-8", newline="").write("".join(out))
