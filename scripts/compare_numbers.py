#!/usr/bin/python3
"""compare_numbers.py - compares two run.dir trees of the same training
config, bit for bit: the helper of scripts/compare_numbers.sh.

usage: compare_numbers.py OLD_RUN_DIR NEW_RUN_DIR [--details FILE]

Both trees hold run folders NAME/NNNN (a resumed config holds two). Per run
folder, present in both or a difference:
  model.h5                   every dataset and every attribute,
  checkpoints/step_*.h5      likewise, every checkpoint file kept,
  metrics.jsonl              every line, every key,
each compared exactly: a dataset's dtype, shape and raw bytes; an
attribute's dtype, shape and bytes; a metric number's float64 bit pattern
(as Python parses cJSON's round-trip printing). An object, attribute, key
or line present on one side only is a difference. Left out, because they
differ between any two runs: the attributes code_commit, code_dirty,
created_utc, run_id, mpitrain_version; the metric keys run_id, time_s and
*_per_s (timing).

Prints three lines, "model.h5<TAB>CELL", "checkpoint<TAB>CELL" and
"metrics<TAB>CELL", CELL being "identical", "-" (no such file on either
side) or "DIFFERENT: <first difference> (...)". --details FILE gets every
difference, one a line. Exit status: 0 all identical, 1 a difference,
2 usage or unreadable input. Needs numpy and h5py (/usr/bin/python3 here).
"""
import glob
import json
import math
import os
import struct
import sys
import traceback

import h5py
import numpy as np

IGNORED_ATTRS = {"code_commit", "code_dirty", "created_utc", "run_id", "mpitrain_version"}
IGNORED_KEYS = {"run_id", "time_s"}


def die(msg):
    print("compare_numbers.py: error: " + msg, file=sys.stderr)
    sys.exit(2)


def ignored_key(k):
    return k in IGNORED_KEYS or k.endswith("_per_s")


def max_abs_diff(a, b):
    """max |a - b| over numeric arrays of one shape; NaN against a number counts as inf,
    NaN against NaN as 0; None when the values are not numbers."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
        return None
    if a.size == 0:
        return 0.0
    x, y = a.astype(np.float64).reshape(-1), b.astype(np.float64).reshape(-1)
    d = np.abs(x - y)
    nx, ny = np.isnan(x), np.isnan(y)
    d[nx & ny] = 0.0
    d[nx ^ ny] = np.inf
    return float(np.max(d))


def text_of(v):
    """v as text when it is a string (h5py gives bytes), else None."""
    v = v[()] if isinstance(v, np.ndarray) and v.shape == () else v
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", "replace")
    return v if isinstance(v, str) else None


def describe(va, vb):
    """': a vs b' for short values, where two texts first differ for long ones; '' for arrays."""
    ta, tb = text_of(va), text_of(vb)
    if ta is not None and tb is not None:
        i = next((k for k in range(min(len(ta), len(tb))) if ta[k] != tb[k]), min(len(ta), len(tb)))
        if len(ta) + len(tb) <= 80:
            return ": %r vs %r" % (ta, tb)
        cut = lambda t: repr(t[max(0, i - 15):i + 25])
        return ": texts differ at character %d: %s vs %s" % (i, cut(ta), cut(tb))
    if np.asarray(va).size == 1 and np.asarray(vb).size == 1:
        return ": %r vs %r" % (np.asarray(va).item(), np.asarray(vb).item())
    return ""


ADDED_KEYS = set()  # config keys the new tree writes and the old one did not know


def config_without_added(ta, tb):
    """tb without the `key = value` lines of keys ta lacks (section-qualified), when both are
    INI texts: a key added since the old commit is not a changed number. Records them."""
    def keyed(t):
        out, sec = [], ""
        for line in t.split("\n"):
            if line.startswith("[") and line.endswith("]"):
                sec = line[1:-1]
            key = sec + "." + line.split(" = ", 1)[0] if " = " in line else None
            out.append((key, line))
        return out
    old = {k for k, _ in keyed(ta) if k}
    if not old:
        return tb
    kept = []
    for k, line in keyed(tb):
        if k and k not in old:
            ADDED_KEYS.add(k)
        else:
            kept.append(line)
    return "\n".join(kept)


def same_text(va, vb):
    """Two texts alike, but for config keys added on the new side."""
    ta, tb = text_of(va), text_of(vb)
    return ta == config_without_added(ta, tb)


def same_bytes(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def h5_objects(f):
    """{path: object} of every group and dataset, the root as '/'."""
    objs = {"/": f}
    f.visititems(lambda name, obj: objs.__setitem__("/" + name, obj))
    return objs


def compare_h5(pa, pb, where):
    """[(what, max abs diff or None)] for every difference between two HDF5 files."""
    out = []
    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        oa, ob = h5_objects(fa), h5_objects(fb)
        for path in sorted(set(oa) | set(ob)):
            if path not in ob:
                out.append(("%s %s: only in old" % (where, path), None))
                continue
            if path not in oa:
                out.append(("%s %s: only in new" % (where, path), None))
                continue
            a, b = oa[path], ob[path]
            if isinstance(a, h5py.Dataset) != isinstance(b, h5py.Dataset):
                out.append(("%s %s: a dataset on one side, a group on the other" % (where, path), None))
                continue
            if isinstance(a, h5py.Dataset):
                va, vb = a[()], b[()]
                if text_of(va) is not None and text_of(vb) is not None:  # /config: its text
                    if not same_text(va, vb):
                        out.append(("%s %s%s" % (where, path, describe(va, vb)), None))
                elif a.dtype != b.dtype or a.shape != b.shape:
                    out.append(("%s %s: dtype/shape %s %s vs %s %s"
                                % (where, path, a.dtype, a.shape, b.dtype, b.shape), None))
                elif not same_bytes(va, vb):
                    out.append(("%s %s" % (where, path), max_abs_diff(va, vb)))
            for name in sorted((set(a.attrs) | set(b.attrs)) - IGNORED_ATTRS):
                at = "%s %s@%s" % (where, path, name)
                if name not in b.attrs:
                    out.append((at + ": only in old", None))
                elif name not in a.attrs:
                    out.append((at + ": only in new", None))
                elif not same_bytes(a.attrs[name], b.attrs[name]):
                    va, vb = a.attrs[name], b.attrs[name]
                    if text_of(va) is not None and text_of(vb) is not None and same_text(va, vb):
                        continue
                    out.append((at + describe(va, vb), max_abs_diff(va, vb)))
    return out


def bits(v):
    """A metric value's identity: numbers by their float64 bit pattern (NaN prints as null)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return (type(v).__name__, v)
    if isinstance(v, (int, float)):
        return ("num", struct.pack("<d", float(v)))
    return ("json", json.dumps(v, sort_keys=True))


def compare_metrics(pa, pb, where):
    out = []
    la = [json.loads(l) for l in open(pa) if l.strip()]
    lb = [json.loads(l) for l in open(pb) if l.strip()]
    if len(la) != len(lb):
        out.append(("%s: %d lines vs %d" % (where, len(la), len(lb)), None))
    for i, (a, b) in enumerate(zip(la, lb)):
        at = "%s line %d (step %s)" % (where, i + 1, a.get("step", "?"))
        for k in sorted(set(a) | set(b)):
            if ignored_key(k):
                continue
            if k not in b:
                out.append(("%s %s: only in old" % (at, k), None))
            elif k not in a:
                out.append(("%s %s: only in new" % (at, k), None))
            elif bits(a[k]) != bits(b[k]):
                d = None
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a[k], b[k])):
                    d = abs(float(a[k]) - float(b[k]))
                    d = math.inf if math.isnan(d) else d
                out.append(("%s %s: %r vs %r" % (at, k, a[k], b[k]), d))
    return out


def cell(diffs, n_files):
    if n_files == 0 and not diffs:
        return "-"
    if not diffs:
        return "identical"
    first, d = diffs[0]
    known = [x for _, x in diffs if x is not None]
    extra = ["max abs diff %.3g" % d] if d is not None else []
    if len(diffs) > 1:
        extra.append("%d differences" % len(diffs) +
                     (", largest abs diff %.3g" % max(known) if known else ""))
    return "DIFFERENT: " + first + (" (%s)" % "; ".join(extra) if extra else "")


def main():
    args = sys.argv[1:]
    details = None
    if "--details" in args:
        i = args.index("--details")
        if i + 1 >= len(args):
            die("--details needs a file")
        details = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2 or args[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr if len(args) != 1 else sys.stdout)
        sys.exit(0 if args[:1] in (["-h"], ["--help"]) else 2)
    old, new = args
    for d in (old, new):
        if not os.path.isdir(d):
            die("no folder %s" % d)

    def runs(root):
        return {os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "*", "[0-9]" * 4))}

    ra, rb = runs(old), runs(new)
    model, ckpt, metrics = [], [], []
    n_model = n_ckpt = n_metrics = 0
    for r in sorted(ra ^ rb):
        metrics.append(("run folder %s: only in %s" % (r, "old" if r in ra else "new"), None))
    for r in sorted(ra & rb):
        a, b = os.path.join(old, r), os.path.join(new, r)
        # model.h5, every kept checkpoint, metrics.jsonl: the same files on both sides
        pairs = [("model.h5", model, 0)]
        names = {os.path.relpath(p, a) for p in glob.glob(os.path.join(a, "checkpoints", "step_*.h5"))}
        names |= {os.path.relpath(p, b) for p in glob.glob(os.path.join(b, "checkpoints", "step_*.h5"))}
        pairs += [(n, ckpt, 0) for n in sorted(names)]
        pairs.append(("metrics.jsonl", metrics, 1))
        for name, dest, is_metrics in pairs:
            fa, fb = os.path.join(a, name), os.path.join(b, name)
            ea, eb = os.path.isfile(fa), os.path.isfile(fb)
            if not ea and not eb:
                continue
            if dest is model:
                n_model += 1
            elif dest is ckpt:
                n_ckpt += 1
            else:
                n_metrics += 1
            where = "%s/%s" % (r, name)
            if ea != eb:
                dest.append(("%s: only in %s" % (where, "old" if ea else "new"), None))
            elif is_metrics:
                dest.extend(compare_metrics(fa, fb, where))
            else:
                dest.extend(compare_h5(fa, fb, where))
    if not (ra | rb):
        metrics.append(("no run folder on either side", None))
        n_metrics = 1
    print("model.h5\t" + cell(model, n_model))
    print("checkpoint\t" + cell(ckpt, n_ckpt))
    print("metrics\t" + cell(metrics, n_metrics))
    if details:
        with open(details, "w") as f:
            for what, d in model + ckpt + metrics:
                f.write("%s%s\n" % (what, "" if d is None else " (max abs diff %.3g)" % d))
    if ADDED_KEYS:
        print("note: config keys new since the old commit, left out of the stored config texts' "
              "comparison: " + ", ".join(sorted(ADDED_KEYS)), file=sys.stderr)
    sys.exit(1 if model or ckpt or metrics else 0)


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError) as err:  # unreadable file, bad JSON
        die(str(err))
    except Exception:  # a bug here must not read as "a difference" (exit 1)
        traceback.print_exc()
        die("unexpected error")
