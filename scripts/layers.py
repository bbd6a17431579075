#!/usr/bin/env python3
"""Checks the module layering that docs/ARCHITECTURE.md describes, from the `crate::` and `super::`
paths in the sources (test modules excluded):

- no import cycle between the modules of `jobs`, `models` or `segments`;
- in `jobs`, a top-level module imports only the modules below it in LAYERS.

    python3 scripts/layers.py        # prints the top-level edges; exit 1 on a violation
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# jobs' top-level modules, lowest first: each may import only the ones before it.
LAYERS = ["redact", "store", "state", "config", "training", "pipeline", "report", "daemon", "tools", "cli"]
# Modules of one layer, which may not import each other either.
SAME_LAYER = [{"daemon", "tools"}]


def modules(src):
    """Module path -> source text, for every .rs file under src."""
    out = {}
    for folder, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, src)[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                text = open(path, encoding="utf-8").read()
                # Unit tests may reach anywhere in their crate.
                text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
                out["::".join(parts)] = text
    return out


def edges(mods):
    """Module -> the modules it refers to (the longest known prefix of each path)."""

    def resolve(path):
        segs = [s for s in path.split("::") if s]
        for i in range(len(segs), 0, -1):
            m = "::".join(segs[:i])
            if m in mods:
                return m
        return None

    out = {}
    for m, text in mods.items():
        deps = set()
        parent = m.rsplit("::", 1)[0] if "::" in m else ""
        paths = re.findall(r"crate::([a-z_][a-z_0-9:]*)", text)
        paths += [f"{parent}::{p}" for p in re.findall(r"\bsuper::([a-z_][a-z_0-9:]*)", text)]
        for group in re.findall(r"use crate::\{([^}]*)\}", text):
            paths += [item.strip() for item in group.split(",")]
        for p in paths:
            d = resolve(p)
            # A module and its own submodules or ancestors are one unit here.
            if d and d != m and not d.startswith(m + "::") and not m.startswith(d + "::"):
                deps.add(d)
        out[m] = deps
    return out


def cycle(graph):
    """One cycle of the graph, or None."""
    state = {}

    def visit(u, stack):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if not state.get(v):
                found = visit(v, stack)
                if found:
                    return found
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if not state.get(u):
            found = visit(u, [])
            if found:
                return found
    return None


def main():
    failures = []
    for crate, src in [("jobs", "jobs"), ("models", "models/src"), ("segments", "segments/src")]:
        graph = edges(modules(os.path.join(ROOT, src)))
        found = cycle(graph)
        if found:
            failures.append(f"{crate}: import cycle {' -> '.join(found)}")
        if crate != "jobs":
            continue
        top = {}
        for m, deps in graph.items():
            for d in deps:
                a, b = m.split("::")[0], d.split("::")[0]
                if a != b:
                    top.setdefault(a, set()).add(b)
        for a in sorted(top):
            print(f"jobs: {a or '(root)'} -> {', '.join(sorted(top[a]))}")
            for b in sorted(top[a]):
                if a not in LAYERS or b not in LAYERS:
                    failures.append(f"jobs: module {a if a not in LAYERS else b} is not in LAYERS")
                elif LAYERS.index(b) >= LAYERS.index(a) or {a, b} in SAME_LAYER:
                    failures.append(f"jobs: {a} imports {b}, which is not below it")
    for f in failures:
        print(f"error: {f}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
