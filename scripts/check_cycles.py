#!/usr/bin/env python3
"""Lists import cycles among the library's files (src/): file A depends on file B when A names an
item of B by path (`use crate::b::…`, `super::b::…`, `crate::b::f(…)`). A `mod.rs` re-exporting its
children (`pub use child::…`, `mod child;`) is a table of contents, not a dependency. Exits 1 on a cycle."""
import re
import sys
from pathlib import Path

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "src")


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


cycles = [sorted(c) for c in sccs(graph) if len(c) > 1]
for c in cycles:
    print("import cycle: " + " ↔ ".join(name(m) for m in c))
    members = set(c)
    for m in c:
        inside = sorted(name(d) for d in graph[m] if d in members)
        print(f"  {name(m)} → {', '.join(inside)}")
print(f"{len(cycles)} import cycle(s) among {len(files)} files")
sys.exit(1 if cycles else 0)
