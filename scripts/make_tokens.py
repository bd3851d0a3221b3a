#!/usr/bin/env python3
"""make_tokens.py - writes a token shard of random tokens in llm.c's format.

usage: make_tokens.py --out FILE [--tokens N] [--vocab V] [--seed S]

The shard (io/tokens.h, docs/DATA.md): a header of 256 little-endian int32
(header[0] = 20240520, the magic; header[1] = 1, the version; header[2] = N,
the token count; the rest 0), then N little-endian uint16 tokens, each drawn
uniformly from [0, V) by Python's random.Random(S): the same file for the same
arguments on any machine. For benchmarks (scripts/bench_gpt_gpu.sh), where
the content of the text does not matter, only its shape. Standard library
only (struct, random, array), so it runs with any python3.
"""
import argparse
import array
import os
import random
import struct
import sys

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
MAX_TOKENS = 2**31 - 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the shard to write (its folder must exist)")
    p.add_argument("--tokens", type=int, default=1 << 20, help="token count N (default 1048576)")
    p.add_argument("--vocab", type=int, default=50257,
                   help="tokens are below this, 1 <= V <= 65536 (default 50257, GPT-2 BPE)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the draw (default 1234)")
    a = p.parse_args()
    if not 0 <= a.tokens <= MAX_TOKENS:
        p.error("--tokens must be in [0, %d]" % MAX_TOKENS)
    if not 1 <= a.vocab <= 65536:
        p.error("--vocab must be in [1, 65536] (tokens are uint16)")

    rng = random.Random(a.seed)
    toks = array.array("H")
    if toks.itemsize != 2:
        sys.exit("make_tokens.py: error: this Python's array 'H' is not 2 bytes")
    chunk = 1 << 16
    left = a.tokens
    while left > 0:
        n = min(chunk, left)
        toks.extend(rng.randrange(a.vocab) for _ in range(n))
        left -= n
    if sys.byteorder != "little":
        toks.byteswap()
    header = [0] * HEADER_INTS
    header[0], header[1], header[2] = MAGIC, VERSION, a.tokens
    tmp = a.out + ".tmp%d" % os.getpid()
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<%di" % HEADER_INTS, *header))
            toks.tofile(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, a.out)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        sys.exit("make_tokens.py: error: cannot write %s: %s" % (a.out, err))
    print("make_tokens.py: %s: %d random tokens < %d (seed %d), %d bytes"
          % (a.out, a.tokens, a.vocab, a.seed, 4 * HEADER_INTS + 2 * a.tokens))


if __name__ == "__main__":
    main()
