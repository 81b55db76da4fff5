#!/usr/bin/python3
"""The file-level dependency graph of src/, and a check that it has no cycles.

style.md asks that dependencies point one way: a file that uses another must not be used by
it, directly or through others. This reads every .rs file under src/ as text, takes the
paths it names (`crate::a::b`, `super::x`, `self::y`, and the items of `use ...::{...}`),
resolves each to the deepest file module that exists, and reports every strongly connected
group of more than one file, and every use that crosses a layer boundary (FORBIDDEN below: config/, protocol/,
metrics/, python/, apache/ and daemon/).
Comments, doc comments and `#[cfg(test)] mod` blocks are
skipped: tests may reach anywhere. A child module naming its parent (mod.rs, lib.rs) does
not count, as the parent is what declares it.

    build_support/module_graph.py --check   exit 1 listing the cycles, if any
    build_support/module_graph.py --edges   print "from -> to" for every edge
    ... --src DIR                           another source tree (the tests use a planted one)
"""

import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, 'src')


def module_of(path):
    """src/a/b.rs -> ('a', 'b'); src/a/mod.rs -> ('a',); src/lib.rs -> ()."""
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ('mod', 'lib'):
        rel = rel[:-1]
    # rwsgi-express.rs includes rwsgi_express/*.rs with #[path]: one crate, named as its dir.
    if rel and rel[0] == 'bin' and len(rel) == 2 and rel[1] == 'rwsgi-express':
        rel = ['bin', 'rwsgi_express']
    return tuple(rel)


def without_tests_and_comments(text):
    text = re.sub(r'//[^\n]*', '', text)
    # Drop `#[cfg(test)] mod name { ... }` by brace matching.
    out, at = [], 0
    for m in re.finditer(r'#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{', text):
        if m.start() < at:
            continue
        out.append(text[at:m.start()])
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {'{': 1, '}': -1}.get(text[i], 0)
            i += 1
        at = i
    out.append(text[at:])
    return ''.join(out)


def use_trees(text):
    """Every full path named by a `use` tree, braces expanded."""
    paths = []
    for m in re.finditer(r'\buse\s+((?:crate|super|self)\b[^;]*);', text):
        stack = [(m.group(1).replace(' ', '').replace('\n', ''), '')]
        while stack:
            tree, prefix = stack.pop()
            brace = tree.find('{')
            if brace < 0:
                for part in tree.split(','):
                    if part:
                        paths.append(prefix + part.split(' as ')[0])
                continue
            head, body = tree[:brace], tree[brace + 1:tree.rfind('}')]
            depth, start, items = 0, 0, []
            for i, c in enumerate(body):
                depth += {'{': 1, '}': -1}.get(c, 0)
                if c == ',' and depth == 0:
                    items.append(body[start:i])
                    start = i + 1
            items.append(body[start:])
            for item in items:
                if item:
                    stack.append((item, prefix + head))
    return paths


def resolve(current, path, modules):
    segments = [s for s in path.split('::') if s]
    if segments[0] == 'crate':
        base, segments = [], segments[1:]
    elif segments[0] in ('super', 'self'):
        # A mod.rs file is its directory's module, so `super` is the same step for both.
        base = list(current)
        while segments and segments[0] in ('super', 'self'):
            if segments[0] == 'super':
                base = base[:-1]
            segments = segments[1:]
    else:
        return None
    full = base + [s for s in segments if s != 'self']
    for n in range(len(full), 0, -1):
        if tuple(full[:n]) in modules:
            return tuple(full[:n])
    return None


def graph():
    files = {}
    for root, _, names in os.walk(SRC):
        for name in names:
            if name.endswith('.rs'):
                path = os.path.join(root, name)
                files[module_of(path)] = path
    modules = set(files)
    edges = {}
    for module, path in files.items():
        with open(path, encoding='utf-8') as f:
            text = without_tests_and_comments(f.read())
        named = re.findall(r'\b(?:crate|super|self)(?:::\w+)+', text) + use_trees(text)
        deps = set()
        for p in named:
            target = resolve(module, p, modules)
            if target is None or target == module:
                continue
            if target == module[:len(target)]:
                continue  # a child naming its parent (or an ancestor)
            deps.add(target)
        edges[module] = deps
    return edges


def cycles(edges):
    """Tarjan's strongly connected components with more than one member."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


# Layers that must not reach others (style.md): the wire protocol, the metrics table and the
# config model know nothing of Apache, Python, the daemons or the handler; the Python host
# knows nothing of Apache, the protocol or who calls it; the Apache layer wraps the C API and
# knows nothing of WSGI (only ffi and the crate-wide utilities, logging and heap); the
# daemons know nothing of Apache, the handler or the composition root (module/).
PURE = {'apache', 'ffi', 'python', 'config', 'protocol', 'metrics', 'daemon', 'handler',
        'module', 'ipc'}
FORBIDDEN = {
    'protocol': PURE - {'protocol'},
    'metrics': PURE - {'metrics'},
    'config': PURE - {'config'},
    'python': {'apache', 'ffi', 'protocol', 'metrics', 'daemon', 'handler', 'module', 'ipc'},
    'apache': {'config', 'protocol', 'metrics', 'ipc', 'python', 'daemon', 'handler',
               'module'},
    'daemon': {'apache', 'ffi', 'handler', 'module'},
}


def layer_breaches(edges):
    return sorted(
        (v, w) for v, deps in edges.items() for w in deps
        if v and w and w[0] in FORBIDDEN.get(v[0], ())
    )


def name(module):
    return '::'.join(module) or 'crate'


def main():
    global SRC
    if '--src' in sys.argv:
        SRC = os.path.abspath(sys.argv[sys.argv.index('--src') + 1])
    edges = graph()
    if '--edges' in sys.argv:
        for v in sorted(edges):
            for w in sorted(edges[v]):
                print(f'{name(v)} -> {name(w)}')
        return 0
    found = cycles(edges)
    breaches = layer_breaches(edges)
    for v, w in breaches:
        print(f'layer breach: {name(v)} -> {name(w)} ({v[0]}/ must not use {w[0]})')
    for group in found:
        members = set(group)
        print('module cycle: ' + ', '.join(name(m) for m in group))
        for v in group:
            for w in sorted(edges[v] & members):
                print(f'    {name(v)} -> {name(w)}')
    return 1 if found or breaches else 0


if __name__ == '__main__':
    sys.exit(main())
