#!/usr/bin/python3
"""The user documentation stays true to the code and its links lead somewhere.

    doc_check.py [--root DIR]   fail (exit 1) naming every fault found in the tree at DIR
                                (default: this checkout)

Checks:

- reference: every directive in `DIRECTIVES` (the Rust source defining
  `pub static DIRECTIVES`, src/config/directive_table.rs) has a `### Name` entry in
  docs/configuration.md whose `- **Syntax:**` line is the table's usage line and whose
  `- **Context:**` line names its scope; every option in `DAEMON_OPTIONS`
  (src/config/daemon_group.rs) has a `### name` entry in docs/daemon-options.md; and no entry
  names a directive or option the module does not have. The names are read from the Rust
  source, so a moved file is still found.
- links: every relative link in README.md, CONTRIBUTING.md, docs/*.md and
  conf-examples/README.md leads to an existing file, and every `#anchor` to a heading of the
  target Markdown file (GitHub's heading anchors).

Apache blocks marked `# complete` are checked against the built module by tests/docs.rs, and
docs/error-reference.md against the source by log_codes.py. Python 3 stdlib only.
"""

import argparse
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# How docs/configuration.md names each `Scope` of directive_table.rs.
CONTEXTS = {
    'ServerOnly': 'server config',
    'ServerVhost': 'server config, virtual host',
    'ServerVhostDir': 'server config, virtual host, directory',
    'AnyDir': 'server config, virtual host, directory, .htaccess (FileInfo)',
    'DirAuth': 'directory, .htaccess (AuthConfig)',
}

# Links to files another branch is adding; reported as notes until the file exists, then
# checked like any other. Remove an entry once its file is in the tree.
PENDING = {}


# ---------------------------------------------------------------------------------------
# The Rust source.

def rust_string(text, i):
    """The value of the Rust string literal starting at text[i] ('"'), and the index after it."""
    assert text[i] == '"'
    out = []
    j = i + 1
    while True:
        c = text[j]
        if c == '"':
            return ''.join(out), j + 1
        if c == '\\':
            n = text[j + 1]
            if n == '\n':  # line continuation: the newline and the next line's indent go
                j += 2
                while text[j] in ' \t\n':
                    j += 1
                continue
            out.append({'n': '\n', 't': '\t', '"': '"', '\\': '\\', "'": "'"}.get(n, n))
            j += 2
            continue
        out.append(c)
        j += 1


def static_slice(root, name):
    """(path, text) of the `pub static NAME: &[...] = &[ ... ];` initialiser under src/, its
    `//` comments blanked."""
    start_re = re.compile(r'pub static ' + name + r'\s*:[^=]*=\s*&\[')
    for base, dirs, files in os.walk(os.path.join(root, 'src')):
        dirs[:] = sorted(d for d in dirs if d != 'tests')
        for f in sorted(files):
            if not f.endswith('.rs'):
                continue
            path = os.path.join(base, f)
            text = open(path, encoding='utf-8').read()
            m = start_re.search(text)
            if not m:
                continue
            out = []
            depth, i = 1, m.end()
            while depth:
                c = text[i]
                if c == '"':
                    _, j = rust_string(text, i)
                    out.append(text[i:j])
                    i = j
                    continue
                if text.startswith('//', i):
                    while text[i] != '\n':
                        i += 1
                    continue
                char = re.match(r"'(\\.|[^\\'])'", text[i:i + 4])
                if char:
                    out.append(char.group(0))
                    i += len(char.group(0))
                    continue
                depth += {'[': 1, ']': -1}.get(c, 0)
                out.append(c)
                i += 1
            return os.path.relpath(path, root), ''.join(out[:-1])
    return None, None


def directives(root):
    """{name: (syntax, scope)} from DIRECTIVES, and the file it is in."""
    path, body = static_slice(root, 'DIRECTIVES')
    if body is None:
        return None, {}
    found = {}
    for m in re.finditer(r'\binfo\(\s*"', body):
        name, i = rust_string(body, m.end() - 1)
        rest = re.match(r'\s*,\s*(\w+)\s*,\s*\w+\s*,\s*', body[i:])
        syntax, _ = rust_string(body, i + rest.end())
        found[name] = (syntax, rest.group(1))
    return path, found


def daemon_options(root):
    """The option names of DAEMON_OPTIONS, and the file it is in."""
    path, body = static_slice(root, 'DAEMON_OPTIONS')
    if body is None:
        return None, []
    return path, re.findall(r'\boption(?:_empty_ok)?\(\s*"([^"]+)"', body)


# ---------------------------------------------------------------------------------------
# Markdown.

FENCE = re.compile(r'^\s*(```|~~~)')


def prose_lines(text):
    """(line number, line) of the lines outside fenced code blocks."""
    fenced = None
    for n, line in enumerate(text.split('\n'), 1):
        m = FENCE.match(line)
        if m:
            if fenced is None:
                fenced = m.group(1)
            elif m.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            yield n, line


def headings(text):
    """(line number, level, text) of each ATX heading outside code blocks."""
    for n, line in prose_lines(text):
        m = re.match(r'^(#{1,6})\s+(.*?)\s*#*\s*$', line)
        if m:
            yield n, len(m.group(1)), m.group(2)


def slug(heading):
    """GitHub's anchor for a heading: its rendered text lower-cased, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links: their text
    text = re.sub(r'<[^>]+>', '', text)  # inline HTML tags
    text = text.replace('`', '').replace('*', '')
    text = text.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(text):
    seen = {}
    out = set()
    for _, _, h in headings(text):
        s = slug(h)
        if s in seen:
            seen[s] += 1
            out.add(f'{s}-{seen[s]}')
        else:
            seen[s] = 0
            out.add(s)
    return out


LINK = re.compile(r'(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')


def links(text):
    """(line number, target) of each inline link outside code."""
    for n, line in prose_lines(text):
        line = re.sub(r'`[^`]*`', '', line)
        for m in LINK.finditer(line):
            yield n, m.group(1)


# ---------------------------------------------------------------------------------------
# The checks.

def reference_entries(text):
    """{name: (line, {field: value})} for each `### ` entry with its `- **Field:**` lines."""
    entries = {}
    current = None
    for n, line in prose_lines(text):
        m = re.match(r'^###\s+(.*?)\s*$', line)
        if m:
            current = m.group(1).strip('`')
            entries[current] = (n, {})
            continue
        if line.startswith('#'):
            current = None
            continue
        f = re.match(r'^- \*\*(\w+):\*\* (.*)$', line)
        if f and current is not None:
            entries[current][1].setdefault(f.group(1), f.group(2).strip())
    return entries


def read_entries(root, doc, faults):
    """The reference entries of `doc` (see reference_entries); none, with a fault, when it
    cannot be read."""
    try:
        return reference_entries(open(os.path.join(root, doc), encoding='utf-8').read())
    except OSError as e:
        faults.append(f'{doc}: {e.strerror}')
        return {}


def check_reference(root, faults):
    src, table = directives(root)
    if src is None:
        faults.append('src/: no `pub static DIRECTIVES` found (directive table moved or renamed?)')
        return
    doc = 'docs/configuration.md'
    entries = read_entries(root, doc, faults)
    entries = {k: v for k, v in entries.items() if k.upper().startswith('WSGI')}
    for name, (syntax, scope) in table.items():
        if name not in entries:
            faults.append(f'{doc}: no entry (### {name}) for directive {name} ({src})')
            continue
        line, fields = entries[name]
        shown = fields.get('Syntax', '')
        if shown != f'`{syntax}`':
            faults.append(f'{doc}:{line}: {name}: Syntax is {shown or "missing"}, '
                          f'the module says `{syntax}` ({src})')
        want = CONTEXTS.get(scope, scope)
        if fields.get('Context') != want:
            faults.append(f'{doc}:{line}: {name}: Context is {fields.get("Context") or "missing"}, '
                          f'the module allows it in: {want} ({src})')
    for name, (line, _) in entries.items():
        if name not in table:
            faults.append(f'{doc}:{line}: entry for {name}, a directive the module does not '
                          f'register ({src})')

    src, options = daemon_options(root)
    if src is None:
        faults.append('src/: no `pub static DAEMON_OPTIONS` found (option table moved or renamed?)')
        return
    doc = 'docs/daemon-options.md'
    entries = read_entries(root, doc, faults)
    for name in options:
        if name not in entries:
            faults.append(f'{doc}: no entry (### {name}) for WSGIDaemonProcess option {name}= '
                          f'({src})')
    for name, (line, _) in entries.items():
        if name not in options:
            faults.append(f'{doc}:{line}: entry for {name}=, a WSGIDaemonProcess option the '
                          f'module does not have ({src})')


def markdown_files(root):
    names = ['README.md', 'CONTRIBUTING.md', 'conf-examples/README.md']
    docs = os.path.join(root, 'docs')
    if os.path.isdir(docs):
        names += sorted('docs/' + f for f in os.listdir(docs) if f.endswith('.md'))
    return [n for n in names if os.path.isfile(os.path.join(root, n))]


def check_links(root, faults, notes):
    cache = {}

    def anchors_of(rel):
        if rel not in cache:
            cache[rel] = anchors(open(os.path.join(root, rel), encoding='utf-8').read())
        return cache[rel]

    for rel in markdown_files(root):
        text = open(os.path.join(root, rel), encoding='utf-8').read()
        for line, target in links(text):
            if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition('#')
            if path:
                dest = os.path.normpath(os.path.join(os.path.dirname(rel), path))
                if dest.startswith('..'):
                    faults.append(f'{rel}:{line}: link {target} leaves the repository')
                    continue
                if not os.path.exists(os.path.join(root, dest)):
                    if dest in PENDING:
                        notes.append(f'{rel}:{line}: {dest} does not exist yet ({PENDING[dest]})')
                    else:
                        faults.append(f'{rel}:{line}: dead link {target}: no file {dest}')
                    continue
            else:
                dest = rel
            if anchor:
                if not dest.endswith('.md') or os.path.isdir(os.path.join(root, dest)):
                    continue
                if anchor not in anchors_of(dest):
                    faults.append(f'{rel}:{line}: dead anchor {target}: {dest} has no heading '
                                  f'#{anchor}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', default=REPO, help='the tree to check (default: this one)')
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    faults, notes = [], []
    check_reference(root, faults)
    check_links(root, faults, notes)
    for n in notes:
        print(f'note: {n}')
    for f in faults:
        print(f)
    if faults:
        print(f'doc_check: {len(faults)} fault(s)', file=sys.stderr)
        return 1
    print('doc_check: reference entries and links OK')
    return 0


if __name__ == '__main__':
    sys.exit(main())
