#!/usr/bin/env python3
"""layering.py - keeps the architecture true (docs/ARCHITECTURE.md).

usage: layering.py REPO includes [BUILD]   the `layering` test
       layering.py REPO shape              the `code_shape` test

includes: the layers, bottom up, are
    base <- kernels <- parallel <- io <- core <- cli
and a file may include only headers of its own layer or of layers below it
(base/ is the leaf vocabulary: the error type and the counter-based RNG,
which every layer may use). No two files may include each other, directly
or through others (a file and its header count as one module). No layer but
parallel/ calls MPI: the others use parallel/'s interface (io/ may still
hand a communicator to parallel HDF5, which is not an MPI_ call); with
BUILD, the compiled layer libraries there (libmt_<layer>.a) are checked too:
no MPI symbol undefined in any but libmt_parallel.a, however the source
spelled the call.

shape: no source file of kernels/, parallel/, io/ or core/ is over 700
lines, and no function in them over 120 lines (from the line that opens its
body to the one that closes it, both included). In kernels/cuda, every
kernel launch (<<<...>>>) is followed within 4 lines by MT_CUDA_LAUNCHED
naming it (its error, and MPITRAIN_CUDA_SYNC's check, under its name), and
cuBLAS calls are checked by MT_CUBLAS_CHECK (its status strings), never by
MT_CUDA_CHECK (the runtime's).

Each finding is one line naming the file and line; exit 1 if there is any.
"""
import os
import re
import subprocess
import sys

LAYERS = ["base", "kernels", "parallel", "io", "core", "cli"]
SHAPED = ["kernels", "parallel", "io", "core"]
SOURCE = (".c", ".h", ".cu", ".cuh")
MAX_FILE, MAX_FUNC = 700, 120

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')
MPI_CALL = re.compile(r"\bP?MPI_[A-Za-z0-9_]+\s*\(")
MPI_SYMBOL = re.compile(r"^\s*U\s+(P?MPI_\w+)")


def sources(repo):
    for layer in LAYERS:
        for root, _, files in os.walk(os.path.join(repo, layer)):
            for f in sorted(files):
                if f.endswith(SOURCE):
                    path = os.path.join(root, f)
                    yield layer, os.path.relpath(path, repo)


def code_lines(text):
    """The lines of text with comments removed and the contents of string
    and character literals blanked (line numbers kept), so a commented-out
    include or an MPI_ word in a message does not count. Preprocessor lines
    keep their strings (the include paths)."""
    out, i, n, line_start = [], 0, len(text), True
    while i < n:
        c = text[i]
        if line_start and c in " \t":
            out.append(c)
            i += 1
            continue
        if line_start and c == "#":  # a directive: verbatim to the end of the line
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(text[i:j].split("//")[0])
            i, line_start = j, False
            continue
        line_start = False
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join("\n" if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            if c == "\n":
                line_start = True
            out.append(c)
            i += 1
    return "".join(out).split("\n")


def module(path):
    return os.path.splitext(path)[0]


def include_target(path, kind, inc):
    """The repository path an include names ("kernels/backend.h"), or None
    for a system header: quoted paths are relative to the including file's
    folder first, then to the repository root (how the build finds them);
    <...> names a repository header when it starts with a layer."""
    if kind == '"':
        here = os.path.normpath(os.path.join(os.path.dirname(path), inc))
        if here.split(os.sep)[0] in LAYERS and "/" not in inc:
            return here
        rooted = os.path.normpath(inc if "/" in inc and not inc.startswith(".") else here)
        return rooted
    top = inc.split("/")[0]
    return os.path.normpath(inc) if top in LAYERS else None


def check_includes(repo, build=None):
    findings = []
    graph = {}
    for layer, path in sources(repo):
        rank = LAYERS.index(layer)
        text = open(os.path.join(repo, path), encoding="utf-8", errors="replace").read()
        lines = code_lines(text)
        for no, line in enumerate(lines, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = include_target(path, m.group(1), m.group(2))
            if target is None:
                continue
            top = target.split(os.sep)[0]
            if top in LAYERS and LAYERS.index(top) > rank:
                findings.append(
                    f"{path}:{no}: includes {m.group(2)}: {layer}/ may not include from {top}/, "
                    f"a layer above it (order: {' <- '.join(LAYERS)})"
                )
            if os.path.exists(os.path.join(repo, target)) and module(target) != module(path):
                graph.setdefault(module(path), set()).add(module(target))
        if layer != "parallel":
            code = "\n".join(lines)
            for m in MPI_CALL.finditer(code):
                no = code.count("\n", 0, m.start()) + 1
                findings.append(
                    f"{path}:{no}: calls MPI ({m.group(0).rstrip('( ').strip()}): outside "
                    f"parallel/, communication goes through parallel/'s interface"
                )
    findings += cycles(graph)
    if build:
        findings += mpi_symbols(build)
    return findings


def mpi_symbols(build):
    """What the compiled layers call, whatever the source spelled: no MPI
    symbol may be undefined in a layer's library but parallel/'s."""
    found = []
    for layer in LAYERS:
        lib = os.path.join(build, f"libmt_{layer}.a")
        if layer == "parallel" or not os.path.exists(lib):
            continue
        out = subprocess.run(["nm", "-u", lib], capture_output=True, text=True).stdout
        names = sorted({m.group(1) for m in map(MPI_SYMBOL.match, out.splitlines()) if m})
        if names:
            found.append(f"{lib}: calls MPI ({', '.join(names)}): outside parallel/")
    return found


def cycles(graph):
    """Every include circle between modules, each reported once."""
    found, seen = [], set()
    state = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                loop = stack[stack.index(nxt):] + [nxt]
                key = frozenset(loop)
                if key not in seen:
                    seen.add(key)
                    found.append("include circle: " + " -> ".join(loop))
            elif not state.get(nxt):
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [])
    return found


def is_function_head(head):
    """Whether the code before a top-level '{' opens a function body: it
    ends with the parameter list's ')' (attributes and qualifiers after it
    allowed), and is not a type, an initializer or a linkage block."""
    head = head.strip()
    if not head or re.match(r"(typedef|struct|enum|union)\b", head):
        return False
    depth = 0
    for ch in head:  # '=' outside parentheses: an initializer, not a definition
        depth += ch == "("
        depth -= ch == ")"
        if ch == "=" and depth == 0:
            return False
    return bool(re.search(r"\)\s*(const|__attribute__\s*\(\(.*\)\)|\w+)?\s*$", head))


def check_shape(repo):
    findings = []
    for layer, path in sources(repo):
        if layer not in SHAPED:
            continue
        text = open(os.path.join(repo, path), encoding="utf-8", errors="replace").read()
        raw = text.split("\n")
        if text.endswith("\n"):
            raw = raw[:-1]
        if len(raw) > MAX_FILE:
            findings.append(f"{path}: {len(raw)} lines (at most {MAX_FILE}: split it by concept)")
        lines = code_lines(text)
        depth, start, head, name = 0, None, [], "?"
        for no, line in enumerate(lines, 1):
            if depth == 0 and line.lstrip().startswith("#"):
                head = []  # a directive ends whatever came before
                continue
            for ch in line:
                if ch == "{":
                    if depth == 0:
                        h = "".join(head)
                        names = re.findall(r"([A-Za-z_]\w*)\s*\(", h)
                        start = no if is_function_head(h) else None
                        name = names[0] if names else "?"
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        if start is not None and no - start + 1 > MAX_FUNC:
                            findings.append(
                                f"{path}:{start}: function {name} is {no - start + 1} lines "
                                f"(at most {MAX_FUNC})"
                            )
                        start, head = None, []
                elif depth == 0:
                    head.append(ch)
                    if ch == ";":
                        head = []
            if depth == 0:
                head.append(" ")
        if path.startswith("kernels/cuda/"):
            findings += check_cuda_errors(path, raw)
    return findings


LAUNCH = re.compile(r"\b(\w+)\s*(<[^<>]*>)?\s*<<<")


def check_cuda_errors(path, lines):
    found = []
    for i, line in enumerate(lines):
        m = LAUNCH.search(line)
        if m and not line.lstrip().startswith(("//", "*", "/*")):
            after = "\n".join(lines[i : i + 5])
            if f'MT_CUDA_LAUNCHED("{m.group(1)}' not in after:
                found.append(
                    f"{path}:{i + 1}: launch of {m.group(1)} not followed by "
                    f'MT_CUDA_LAUNCHED("{m.group(1)}...") within 4 lines'
                )
        if re.search(r"MT_CUDA_CHECK\(\s*cublas", line):
            found.append(f"{path}:{i + 1}: a cuBLAS call checked by MT_CUDA_CHECK (use MT_CUBLAS_CHECK)")
    return found


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[2] not in ("includes", "shape"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    repo, mode = sys.argv[1], sys.argv[2]
    build = sys.argv[3] if len(sys.argv) == 4 else None
    findings = check_includes(repo, build) if mode == "includes" else check_shape(repo)
    for f in findings:
        print(f)
    what = "layering" if mode == "includes" else "code shape"
    if findings:
        print(f"{what}: {len(findings)} finding(s)")
        return 1
    n = sum(1 for _ in sources(repo))
    print(f"{what}: {n} files, no findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
