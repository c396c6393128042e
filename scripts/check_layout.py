#!/usr/bin/env python3
"""Checks the shape of the library (README "Layout"); exits 1 with what breaks it:
- no import cycle among src/ files: file A depends on file B when A names an item of B by path
  (`use crate::b::…`, `super::b::…`, `crate::b::f(…)`); a `mod.rs` re-exporting its children
  (`pub use child::…`, `mod child;`) is a table of contents, not a dependency;
- no src/ file over MAX_LINES lines;
- the command line (cli/src) uses nothing of `chute::lambda` (the Lambda glue): what it shares with
  the handlers lives in `chute::app` and the pure rooms."""
import re
import sys
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
SRC = ROOT / "src"
MAX_LINES = 600


def module_of(path: Path) -> tuple:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


files = {module_of(p): p for p in SRC.rglob("*.rs")}


def file_for(module: tuple):
    """The file that defines the longest prefix of `module`."""
    for n in range(len(module), -1, -1):
        if module[:n] in files:
            return module[:n]
    return None


PATH = re.compile(r"\b((?:crate|super|self)(?:::\{?[A-Za-z_][A-Za-z0-9_]*)+)")


def strip_tests(text: str) -> str:
    # Unit tests may use anything; only the code's own dependencies count.
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    return text[: cut.start()] if cut else text


def lines_of(text: str):
    for line in strip_tests(text).splitlines():
        s = line.strip()
        if s.startswith("//"):
            continue
        yield s


def dependencies(module: tuple, path: Path):
    is_dir_module = path.name in ("mod.rs", "lib.rs")
    deps = set()
    for s in lines_of(path.read_text()):
        if is_dir_module and (s.startswith("pub use ") or s.startswith("mod ") or s.startswith("pub mod ")):
            continue
        for m in PATH.finditer(s):
            parts = m.group(1).replace("{", "").split("::")
            if parts[0] == "crate":
                target = tuple(parts[1:])
            else:
                cur = list(module)
                i = 0
                while i < len(parts) and parts[i] in ("super", "self"):
                    if parts[i] == "super":
                        cur = cur[:-1]
                    i += 1
                target = tuple(cur + parts[i:])
            # `use x::{a, b}` resolves as `x`: enough to know which file.
            dep = file_for(target)
            if dep is not None and dep != module and dep != ():
                deps.add(dep)
    return deps


graph = {m: dependencies(m, p) for m, p in files.items()}


def sccs(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def name(m):
    return str(files[m].relative_to(SRC))


problems = 0
cycles = [sorted(c) for c in sccs(graph) if len(c) > 1]
for c in cycles:
    problems += 1
    print("import cycle: " + " ↔ ".join(name(m) for m in c))
    members = set(c)
    for m in c:
        inside = sorted(name(d) for d in graph[m] if d in members)
        print(f"  {name(m)} → {', '.join(inside)}")
for m, path in sorted(files.items()):
    lines = len(path.read_text().splitlines())
    if lines > MAX_LINES:
        problems += 1
        print(f"{name(m)} has {lines} lines (at most {MAX_LINES}: split it by job)")
for path in sorted((ROOT / "cli" / "src").rglob("*.rs")):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if re.search(r"\bchute::lambda\b", line):
            problems += 1
            print(f"{path.relative_to(ROOT)}:{number} uses chute::lambda: {line.strip()}")
print(f"layout: {len(cycles)} import cycle(s) among {len(files)} src files, {problems} problem(s)")
sys.exit(1 if problems else 0)
