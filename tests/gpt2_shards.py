"""gpt2_shards.py - the documents of GPT-2 token shards (llm.c's format), for
the tokenizer's tests: documents(paths) reads the shards in order (after
each 1024-byte header, little-endian uint16 tokens) and splits the tokens
at <|endoftext|> (50256) into a list of token lists."""

EOT = 50256


def documents(paths):
    b = b"".join(open(p, "rb").read()[1024:] for p in paths)
    toks = [int.from_bytes(b[i:i + 2], "little") for i in range(0, len(b), 2)]
    docs, cur = [], []
    for t in toks:
        if t == EOT:
            docs.append(cur)
            cur = []
        else:
            cur.append(t)
    docs.append(cur)
    return docs
