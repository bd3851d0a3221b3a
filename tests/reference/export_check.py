#!/usr/bin/python3
"""export_check.py - check `mpitrain export --format safetensors` from outside.

  export_check.py gpt OUT.safetensors CKPT.h5 RUN_DIR
  export_check.py mlp OUT.safetensors CKPT.h5
  export_check.py same A.safetensors B.safetensors
  export_check.py llmc OUT.bin CKPT.h5 RUN_DIR

The safetensors file is read by the reader below (json + numpy only, the
format parsed from its bytes: 8-byte little-endian header length, JSON header,
data), which also checks the layout: the header is JSON padded with spaces so
the data starts 8-byte aligned, every tensor is F32 with data_offsets that
tile the data exactly (no hole, no overlap, nothing after), and __metadata__
maps strings to strings.

gpt: (a) every tensor equals the checkpoint's /model tensor (h5py) bitwise
after the documented mapping: the "transformer." prefix, the Conv1D weights
(attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) transposed, wte cut to
model.vocab_size rows; exactly GPT2LMHeadModel's names, no lm_head.weight;
config.json next to it describes the model. (b) a PyTorch GPT-2 written here
in Hugging Face's layout (Conv1D x @ W + b, pre-LN, causal attention, GELU
tanh, the head tied to wte) loads the file with strict names, computes the
loss on the validation windows mpitrain's final evaluation used (the first
train.eval_windows non-overlapping windows of seq_len tokens of the
validation shards, in sorted order, each with its next tokens as targets;
the mean over every token) and must match run.json's result.test_loss
within 1e-5 relative.

mlp: every tensor is the checkpoint's, same name, same shape, bitwise, and
all of them are there.

same: the two files hold the same tensors bitwise (names, shapes, data).

llmc: llm.c's GPT-2 model file (`--format llmc`), read by the reader below
from its bytes: the header (256 int32: magic 20240326, version 3, maxT, V,
L, NH, C, Vp a multiple of 128 >= V) matches the config, the file is exactly
the header and the 16 tensors of llm.c's order, every tensor equals the
checkpoint's bitwise (each block kind stacked over the layers, wte's rows
past V zero); then the same PyTorch GPT-2 loads them (Conv1D weights
transposed from llm.c's (out, in)) and must give mpitrain's validation loss.

Exit 0 when all hold, 1 otherwise, 77 when numpy, h5py or torch is missing.
"""
import configparser
import glob
import json
import math
import os
import sys

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as err:
    print(f"skip: {err} (install python3-numpy python3-h5py python3-torch)")
    sys.exit(77)

LOSS_TOL = 1e-5
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


class Bad(Exception):
    pass


def read_safetensors(path):
    """(tensors name -> float32 array, metadata dict), checking the layout."""
    raw = open(path, "rb").read()
    if len(raw) < 8:
        raise Bad(f"{path}: {len(raw)} bytes, no header length")
    n = int.from_bytes(raw[:8], "little")
    if 8 + n > len(raw):
        raise Bad(f"{path}: header length {n} runs past the file ({len(raw)} bytes)")
    text = raw[8:8 + n].decode("utf-8")
    if not text.startswith("{") or (8 + n) % 8:
        raise Bad(f"{path}: header does not start with '{{' or data is not 8-byte aligned")
    if text != text.rstrip(" ") and text.rstrip(" ")[-1] != "}":
        raise Bad(f"{path}: padding after something other than the JSON")
    header = json.loads(text)
    meta = header.pop("__metadata__", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise Bad(f"{path}: __metadata__ is not string -> string")
    data = raw[8 + n:]
    spans, out = [], {}
    for name, d in header.items():
        if d["dtype"] != "F32":
            raise Bad(f"{path}: {name} has dtype {d['dtype']}")
        b, e = d["data_offsets"]
        count = math.prod(d["shape"])
        if e - b != 4 * count:
            raise Bad(f"{path}: {name}: offsets {b}..{e} for {count} floats")
        spans.append((b, e, name))
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(d["shape"])
    spans.sort()
    at = 0
    for b, e, name in spans:
        if b != at:
            raise Bad(f"{path}: {name} starts at {b}, the previous tensor ends at {at}")
        at = e
    if at != len(data):
        raise Bad(f"{path}: tensors end at byte {at} of {len(data)} data bytes")
    return out, meta


def bits(a):
    return np.ascontiguousarray(a, dtype="<f4").view("<u4")


def checkpoint_model(path):
    with h5py.File(path, "r") as f:
        return {k: f["model"][k][()] for k in f["model"]}


def expect_equal(name, got, want):
    if got.shape != want.shape:
        raise Bad(f"{name}: shape {got.shape}, expected {want.shape}")
    diff = np.count_nonzero(bits(got) != bits(want))
    if diff:
        raise Bad(f"{name}: {diff} of {want.size} elements differ bitwise")


def hf_to_mpitrain(name, a):
    """The checkpoint tensor's name and the exported tensor mapped back."""
    if not name.startswith("transformer."):
        raise Bad(f"{name}: not a GPT2LMHeadModel transformer.* name")
    src = name[len("transformer."):]
    if src.split(".", 2)[-1] in CONV1D and src.startswith("h."):
        return src, a.T
    return src, a


def run_config(run_dir):
    ini = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    ini.read(f"{run_dir}/config.ini")
    return ini


def check_gpt_tensors(st, meta, ckpt, ini, out_dir):
    model = {k: int(ini["model"][k]) for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")}
    L, C, V = model["n_layer"], model["n_embd"], model["vocab_size"]
    names = ["transformer.wte.weight", "transformer.wpe.weight"]
    for i in range(L):
        names += [f"transformer.h.{i}.{k}" for k in (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
            "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
            "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")]
    names += ["transformer.ln_f.weight", "transformer.ln_f.bias"]
    if sorted(st) != sorted(names):
        raise Bad(f"names differ from GPT2LMHeadModel's: extra {sorted(set(st) - set(names))}, "
                  f"missing {sorted(set(names) - set(st))}")
    shapes = {"transformer.wte.weight": (V, C), "transformer.h.0.attn.c_attn.weight": (C, 3 * C),
              "transformer.h.0.mlp.c_fc.weight": (C, 4 * C), "transformer.h.0.mlp.c_proj.weight": (4 * C, C)}
    for k, s in shapes.items():
        if st[k].shape != s:
            raise Bad(f"{k}: shape {st[k].shape}, Hugging Face's is {s}")
    for name, a in st.items():
        src, back = hf_to_mpitrain(name, a)
        want = ckpt[src]
        if src == "wte.weight":
            want = want[:V]  # rows past vocab_size are padding (none in a file so far)
        expect_equal(name, back, want)
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    want_cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": L,
                "n_head": model["n_head"], "n_embd": C, "n_positions": model["block_size"],
                "vocab_size": V, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
                "tie_word_embeddings": True}
    for k, v in want_cfg.items():
        if cfg.get(k) != v:
            raise Bad(f"config.json: {k} = {cfg.get(k)!r}, expected {v!r}")
    if meta.get("format") != "pt":
        raise Bad(f"__metadata__ format = {meta.get('format')!r}, transformers wants 'pt'")
    print(f"ok - {len(st)} tensors equal the checkpoint's bitwise (4 Conv1D weights x {L} "
          f"transposed, wte {V} rows); config.json and __metadata__ as expected")
    return model


LLMC_ORDER = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
              "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
              "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")


def check_llmc(path, ckpt, ini):
    """llm.c's file -> GPT2LMHeadModel's state dict (name -> array), checked
    bitwise against the checkpoint on the way."""
    raw = open(path, "rb").read()
    h = np.frombuffer(raw[:1024], dtype="<i4")
    m = ini["model"]
    L, NH, C, V, T = (int(m[k]) for k in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size"))
    Vp = int(h[7])
    want = [20240326, 3, T, V, L, NH, C]
    if list(h[:7]) != want or Vp < V or Vp % 128 or any(h[8:]):
        raise Bad(f"llm.c header {list(h[:8])}, expected {want} + Vp (a multiple of 128 >= {V})")
    x = np.frombuffer(raw[1024:], dtype="<f4")
    shapes = [("wte.weight", (Vp, C)), ("wpe.weight", (T, C))]
    units = {"attn.c_attn.weight": (3 * C, C), "attn.c_attn.bias": (3 * C,), "attn.c_proj.weight": (C, C),
             "mlp.c_fc.weight": (4 * C, C), "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.weight": (C, 4 * C)}
    shapes += [(k, (L,) + units.get(k, (C,))) for k in LLMC_ORDER]
    shapes += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    total = sum(math.prod(s) for _, s in shapes)
    if x.size != total:
        raise Bad(f"{x.size} floats after the header, llm.c's layout has {total}")
    hf, at = {}, 0
    for name, shape in shapes:
        a = x[at:at + math.prod(shape)].reshape(shape)
        at += a.size
        if name == "wte.weight":
            if np.any(bits(a[V:])):
                raise Bad(f"wte rows {V}..{Vp} (padding) are not all +0.0")
            a = a[:V]
        if len(shape) and shape[0] == L and name.split(".")[0] in ("ln_1", "ln_2", "attn", "mlp"):
            for i in range(L):
                expect_equal(f"{name}[{i}]", a[i], ckpt[f"h.{i}.{name}"])
                hf[f"transformer.h.{i}.{name}"] = a[i].T if name in CONV1D else a[i]
        else:
            expect_equal(name, a, ckpt[name])
            hf[f"transformer.{name}"] = a
    print(f"ok - llm.c file: header {list(h[:8])}, {len(shapes)} tensors equal the checkpoint's "
          f"bitwise, wte padded with {Vp - V} zero rows")
    return hf, {"n_layer": L, "n_head": NH, "n_embd": C, "block_size": T, "vocab_size": V}


class Conv1D(nn.Module):
    """Hugging Face's GPT-2 linear layer: weight [in, out], y = x @ W + b."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.c_attn, self.c_proj, self.NH = Conv1D(C, 3 * C), Conv1D(C, C), NH

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.NH
        q, k, v = (u.view(B, T, self.NH, hs).transpose(1, 2) for u in self.c_attn(x).split(C, dim=2))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc, self.c_proj = Conv1D(C, 4 * C), Conv1D(4 * C, C)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # "gelu_new"


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(C, eps=1e-5), Attention(C, NH)
        self.ln_2, self.mlp = nn.LayerNorm(C, eps=1e-5), MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2LMHead(nn.Module):
    """GPT2LMHeadModel's module tree (so its state_dict names are HF's); the
    head is wte itself, as with tie_word_embeddings."""

    def __init__(self, L, NH, C, n_positions, V):
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(V, C)
        self.transformer.wpe = nn.Embedding(n_positions, C)
        self.transformer.h = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.transformer.ln_f = nn.LayerNorm(C, eps=1e-5)

    def forward(self, idx):
        t = self.transformer
        x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1]))
        for block in t.h:
            x = block(x)
        return t.ln_f(x) @ t.wte.weight.T


def val_windows(ini, T):
    """The windows mpitrain's evaluation takes: the first train.eval_windows
    (0: all) windows of T tokens of the validation shards, non-overlapping,
    each shard cut into (n - 1) // T of them, shards in sorted order."""
    xs, ys = [], []
    for path in sorted(glob.glob(ini["data"]["val_tokens"])):
        raw = open(path, "rb").read()
        head = np.frombuffer(raw[:1024], dtype="<i4")
        tok = np.frombuffer(raw[1024:], dtype="<u2")[:head[2]].astype(np.int64)
        for k in range((len(tok) - 1) // T):
            xs.append(tok[k * T:(k + 1) * T])
            ys.append(tok[k * T + 1:(k + 1) * T + 1])
    n = int(ini["train"].get("eval_windows", "0"))
    if 0 < n < len(xs):
        xs, ys = xs[:n], ys[:n]
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def check_gpt_loss(st, model, ini, run_dir):
    torch.set_num_threads(1)
    net = GPT2LMHead(model["n_layer"], model["n_head"], model["n_embd"], model["block_size"],
                     model["vocab_size"])
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in st.items()}, strict=True)
    T = int(ini["train"].get("seq_len", "0")) or model["block_size"]
    x, y = val_windows(ini, T)
    with torch.no_grad():
        logits = net(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item()
    theirs = json.load(open(f"{run_dir}/run.json"))["result"]["test_loss"]
    rel = abs(loss - theirs) / abs(theirs)
    line = (f"PyTorch GPT-2 from the export: val loss {loss:.8f} on {x.shape[0]} windows of {T}, "
            f"mpitrain {theirs:.8f}, rel diff {rel:.1e} (tolerance {LOSS_TOL:g})")
    if not rel <= LOSS_TOL:
        raise Bad(line)
    print(f"ok - {line}")


def main(argv):
    mode = argv[1] if len(argv) > 1 else ""
    if mode == "gpt" and len(argv) == 5:
        st, meta = read_safetensors(argv[2])
        ini = run_config(argv[4])
        model = check_gpt_tensors(st, meta, checkpoint_model(argv[3]), ini, os.path.dirname(argv[2]) or ".")
        check_gpt_loss(st, model, ini, argv[4])
    elif mode == "mlp" and len(argv) == 4:
        st, meta = read_safetensors(argv[2])
        ckpt = checkpoint_model(argv[3])
        if sorted(st) != sorted(ckpt):
            raise Bad(f"names {sorted(st)}, the checkpoint's {sorted(ckpt)}")
        for name in st:
            expect_equal(name, st[name], ckpt[name])
        print(f"ok - {len(st)} MLP tensors equal the checkpoint's bitwise "
              f"({', '.join(f'{k} {list(v.shape)}' for k, v in sorted(st.items()))})")
    elif mode == "same" and len(argv) == 4:
        a, _ = read_safetensors(argv[2])
        b, _ = read_safetensors(argv[3])
        if sorted(a) != sorted(b):
            raise Bad(f"names differ: {sorted(set(a) ^ set(b))}")
        for name in a:
            expect_equal(name, a[name], b[name])
        print(f"ok - the two files hold the same {len(a)} tensors bitwise")
    elif mode == "llmc" and len(argv) == 5:
        ini = run_config(argv[4])
        hf, model = check_llmc(argv[2], checkpoint_model(argv[3]), ini)
        check_gpt_loss(hf, model, ini, argv[4])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (Bad, KeyError, ValueError, OSError) as err:
        print(f"FAIL - {err}")
        sys.exit(1)
