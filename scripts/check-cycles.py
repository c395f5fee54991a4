#!/usr/bin/env python3
"""Fails when modules of one crate import each other in a cycle.

Usage: scripts/check-cycles.py SRC_DIR [SRC_DIR ...]   (for example gateway/src)

For each crate source folder it builds the module tree from the files
(`a.rs`, `a/b.rs`, `a/mod.rs`), reads every `crate::`, `super::` and `self::`
path (in `use` lines, braces expanded, and inline in code; comments and string
literals are skipped), and turns each into an edge between two sibling modules:
the first modules where the referring file's path and the referred path part.
`crate::Name` where the crate root re-exports `Name` (`pub use a::Name`) counts
as a reference to `a`. A cycle among siblings (strongly connected modules) is
printed with one line of evidence per edge, and the exit status is 1.
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """Blanks comments, string and char literals (keeping line breaks and offsets)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 40]) and (i == 0 or not re.match(r"\w", text[i - 1])):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12]):
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [re.sub(r"\bas\w+$", "", tree)]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p:
            out.extend(prefix + q for q in expand(p))
    return out


class Crate:
    def __init__(self, src):
        self.src = src.rstrip("/")
        self.files = {}  # module path tuple -> file
        for root, _, names in os.walk(self.src):
            for name in names:
                if not name.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(root, name), self.src)[:-3].split(os.sep)
                if rel in (["lib"], ["main"]):
                    path = ()
                elif rel[-1] == "mod":
                    path = tuple(rel[:-1])
                elif len(rel) >= 1 and rel[0] == "bin":
                    continue  # each src/bin file is a crate of its own
                else:
                    path = tuple(rel)
                self.files.setdefault(path, os.path.join(root, name))
        self.modules = set(self.files)
        self.texts = {p: strip(open(f, encoding="utf-8").read()) for p, f in self.files.items()}
        # Names a module file re-exports: (module path, name) -> child module.
        self.reexports = {}
        for path, text in self.texts.items():
            for m in re.finditer(r"\bpub\s+use\s+([^;]+);", text):
                for full in expand(m.group(1)):
                    segs = [s for s in full.split("::") if s]
                    if segs and segs[0] in ("self",):
                        segs = segs[1:]
                    if segs and segs[0] == "crate":
                        segs = segs[1:]
                        if len(segs) >= 2 and path + (segs[0],) in self.modules:
                            pass
                    if len(segs) >= 2 and path + (segs[0],) in self.modules:
                        name = re.sub(r"as(\w+)$", r"\1", segs[-1])
                        self.reexports[(path, name)] = segs[0]

    def references(self, path):
        """(line, absolute path segments) of every crate-relative path in the file."""
        text = self.texts[path]
        # Inline `mod x {` blocks, for what `super::` means inside them.
        opens = [(m.end(), m.group(1)) for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", text)]
        inline_at, stack, depth, k = {}, [], 0, 0
        for i, ch in enumerate(text):
            while k < len(opens) and opens[k][0] - 1 == i:
                stack.append((opens[k][1], depth))
                k += 1
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                while stack and stack[-1][1] >= depth:
                    stack.pop()
            inline_at[i] = tuple(s[0] for s in stack)
        refs = []
        spans = []
        for m in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", text):
            spans.append((m.start(), m.end()))
            for full in expand(m.group(1)):
                refs.append((m.start(), full))
        for m in re.finditer(r"(?<![\w$:])(?:crate|super|self)(?:::(?:" + IDENT + r"|\*))+", text):
            if any(a <= m.start() < b for a, b in spans):
                continue
            refs.append((m.start(), m.group(0)))
        out = []
        for pos, full in refs:
            cur = list(path) + list(inline_at.get(pos, ()))
            segs = [s for s in full.split("::") if s]
            if not segs:
                continue
            if segs[0] == "crate":
                absolute, segs = [], segs[1:]
            else:
                absolute = cur[:]
                while segs and segs[0] in ("super", "self"):
                    if segs.pop(0) == "super":
                        absolute = absolute[:-1]
            absolute += [s for s in segs if s != "*"]
            out.append((text.count("\n", 0, pos) + 1, tuple(absolute)))
        return out

    def edges(self):
        """(parent, from, to) -> evidence `file:line: path`."""
        found = {}
        for path in self.files:
            for line, target in self.references(path):
                k = 0
                while k < len(path) and k < len(target) and path[k] == target[k]:
                    k += 1
                if k >= len(path) or k >= len(target):
                    continue  # the file itself, an ancestor or a descendant
                parent = path[:k]
                to = target[k]
                if parent + (to,) not in self.modules:
                    to = self.reexports.get((parent, to))
                    if to is None:
                        continue  # an item of the parent module itself
                if to == path[k]:
                    continue
                key = (parent, path[k], to)
                found.setdefault(key, f"{self.files[path]}:{line}: {'::'.join(('crate',) + target)}")
        return found


def cycles(nodes, adj):
    """Strongly connected groups of more than one node (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(adj[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def one_cycle(group, adj):
    """A shortest cycle through the group's first node, as a list of nodes."""
    start = group[0]
    members = set(group)
    prev, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(adj[v]):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return list(reversed(path)) + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return group + [start]


def main(argv):
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = False
    for src in argv:
        if not os.path.isdir(src):
            print(f"check-cycles: {src}: not a folder", file=sys.stderr)
            return 2
        crate = Crate(src)
        edges = crate.edges()
        by_parent = defaultdict(lambda: defaultdict(set))
        for parent, a, b in edges:
            by_parent[parent][a].add(b)
            by_parent[parent][b]
        count = 0
        for parent in sorted(by_parent):
            adj = by_parent[parent]
            for group in cycles(adj.keys(), adj):
                failed, count = True, count + 1
                where = "::".join(("crate",) + parent)
                cycle = one_cycle(group, adj)
                print(f"{src}: cycle among modules of {where}: {' -> '.join(cycle)}")
                if len(group) > len(cycle) - 1:
                    print(f"  (strongly connected: {', '.join(group)})")
                for a, b in zip(cycle, cycle[1:]):
                    print(f"  {a} -> {b}: {edges[(parent, a, b)]}")
                if os.environ.get("CHECK_CYCLES_VERBOSE"):
                    for a in group:
                        for b in sorted(adj[a] & set(group)):
                            print(f"    edge {a} -> {b}: {edges[(parent, a, b)]}")
        if count == 0:
            print(f"{src}: no module cycles ({len(crate.modules)} modules)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
