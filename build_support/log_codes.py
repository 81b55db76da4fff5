#!/usr/bin/python3
"""Stable codes on the lines mod_rwsgi writes to Apache's error log.

Every call that logs a line of the module's own (not text an application wrote) carries a
code at the start of its message, `RW0001: ...`, as Apache's own lines carry `AH00001:`.
An operator can grep for it and look it up in docs/error-reference.md; the words after it
may change between versions, the code does not.

    log_codes.py --check   fail (exit 1) naming every call without a code, every code used
                           twice, and every difference between the source and
                           docs/error-reference.md
    log_codes.py --apply   give each call without a code the next free one (wrapping a
                           message that is not a string literal in format!), then rewrite
                           docs/error-reference.md

A call that passes on text that is not ours (what an application printed or logged) is
marked `// log-code: none (why)` on its line or the line before, and is left alone.
Python 3 stdlib only.
"""

import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, 'src')
DOC = os.path.join(REPO, 'docs', 'error-reference.md')

# The functions that write a line to the error log, as they are called around the tree.
CALL = re.compile(
    r'(?<![\w:])(?:crate::|super::)*(?:'
    r'logging::(?:log|error|warning|notice|info|debug)'
    r'|(?:apache::)?log::(?:server|startup|request|process)'
    r'|(?:python::|log_object::)?(?:log|log_detached|log_in_request(?:_detached)?)'
    r'|logging::log_at!|(?:apache::)?log::(?:request_at|process_at)!'
    r'|(?:python::)?(?:py_log_at|py_log_detached_at)!'
    r')\s*\(')
CODE = re.compile(r'RW(\d{4}): ')
EXEMPT = '// log-code: none'
# Files that define the logging functions or only test them.
SKIP_FILES = {'logging.rs', 'apache/log.rs'}
LEVELS = ('Emerg', 'Alert', 'Crit', 'Error', 'Warning', 'Notice', 'Info', 'Debug')
LEVEL_OF_FUNCTION = {'error': 'Error', 'warning': 'Warning', 'notice': 'Notice',
                     'info': 'Info', 'debug': 'Debug'}


def rust_files():
    for root, dirs, files in os.walk(SRC):
        dirs[:] = sorted(d for d in dirs if d != 'tests')
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, SRC)
            if name.endswith('.rs') and rel not in SKIP_FILES and name != 'tests.rs':
                yield path, rel


def skip_literal(text, i):
    """Index just past the string or char literal starting at text[i]."""
    if text[i] == 'r':  # raw string r"..." / r#"..."#
        j = i + 1
        hashes = 0
        while text[j] == '#':
            hashes += 1
            j += 1
        end = '"' + '#' * hashes
        return text.index(end, j + 1) + len(end)
    quote = text[i]
    j = i + 1
    while text[j] != quote:
        j += 2 if text[j] == '\\' else 1
    return j + 1


def is_char_literal(text, i):
    # 'a' or '\n' (not a lifetime such as 'a or 'static)
    return re.match(r"'(?:[^'\\]|\\.|\\u\{[0-9a-fA-F]+\})'", text[i:i + 12]) is not None


def call_end(text, open_paren):
    """Index of the parenthesis closing the call opened at text[open_paren]."""
    depth = 0
    i = open_paren
    while i < len(text):
        c = text[i]
        if c == '"' or (c == 'r' and re.match(r'r#*"', text[i:i + 8])
                        and not text[i - 1].isalnum() and text[i - 1] != '_'):
            i = skip_literal(text, i)
            continue
        if c == "'" and is_char_literal(text, i):
            i = skip_literal(text, i)
            continue
        if text.startswith('//', i):
            i = text.index('\n', i)
            continue
        if c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError('unbalanced call')


def split_args(text, start, end):
    """Top-level argument spans (start, end) of the call between start and end."""
    spans, depth, i, arg_start = [], 0, start, start
    while i < end:
        c = text[i]
        if c == '"' or (c == 'r' and re.match(r'r#*"', text[i:i + 8])
                        and not (text[i - 1].isalnum() or text[i - 1] == '_')):
            i = skip_literal(text, i)
            continue
        if c == "'" and is_char_literal(text, i):
            i = skip_literal(text, i)
            continue
        if c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
        elif c == ',' and depth == 0:
            spans.append((arg_start, i))
            arg_start = i + 1
        i += 1
    if text[arg_start:end].strip():
        spans.append((arg_start, end))
    return spans


class Site:
    def __init__(self, rel, line, function, level, message, code, literal_at):
        self.rel, self.line, self.function, self.level = rel, line, function, level
        self.message, self.code, self.literal_at = message, code, literal_at


def first_literal(text, start, end):
    """(index, contents) of the first string literal in text[start:end], or None."""
    i = start
    while i < end:
        c = text[i]
        if c == "'" and is_char_literal(text, i):
            i = skip_literal(text, i)
            continue
        if c == '"':
            j = skip_literal(text, i)
            return i, text[i + 1:j - 1]
        i += 1
    return None


def built_from(text, call_at, name):
    """The first string literal of the nearest `let name = ...` before call_at."""
    lets = list(re.finditer(r'\blet\s+(?:mut\s+)?' + name + r'\b[^=]*=', text[:call_at]))
    if not lets:
        return None
    start = lets[-1].end()
    builder = re.match(r'\s*([\w:]+)\(', text[start:])
    if builder and builder.group(1) not in ('format!', 'format'):
        return '(written by `' + builder.group(1) + '()`)'
    lit = first_literal(text, start, call_at)
    return lit[1] if lit else None


def level_of(function, args_text):
    name = function.rsplit('::', 1)[-1]
    if name in LEVEL_OF_FUNCTION:
        return LEVEL_OF_FUNCTION[name]
    found = [lv for lv in LEVELS if re.search(r'Level::' + lv + r'\b', args_text)]
    return '/'.join(found) if found else 'caller-chosen'


def scan_file(path, rel):
    text = open(path, encoding='utf-8').read()
    lines_before = text.count
    sites = []
    for m in CALL.finditer(text):
        line_start = text.rfind('\n', 0, m.start()) + 1
        line_text = text[line_start:text.find('\n', m.start())]
        if re.match(r'\s*(pub(\(\w+\))?\s+)?(unsafe\s+)?fn\b', line_text) or \
                line_text.lstrip().startswith('//'):
            continue
        prev_line = text[text.rfind('\n', 0, line_start - 1) + 1:line_start]
        if EXEMPT in line_text or EXEMPT in prev_line:
            continue
        open_paren = m.end() - 1
        end = call_end(text, open_paren)
        args = split_args(text, open_paren + 1, end)
        function = m.group(0).rstrip('( \n')
        # A function takes the message last; a macro (`log_at!`) takes a format string and
        # its arguments after the level.
        message_arg = (args[-1] if not function.endswith('!') else
                       next((a for a in args if first_literal(text, *a)), args[-1]))
        lit = first_literal(text, *message_arg)
        level = level_of(function, text[open_paren:end])
        line = lines_before('\n', 0, m.start()) + 1
        if lit is None:
            sites.append(Site(rel, line, function, level, None, None, message_arg))
            continue
        at, contents = lit
        code_m = CODE.match(contents)
        code = int(code_m.group(1)) if code_m else None
        message = contents[code_m.end():] if code_m else contents
        wrapped = re.fullmatch(r'\{([a-z_][a-z0-9_]*)\}', message)
        if wrapped:
            message = built_from(text, m.start(), wrapped.group(1))
        sites.append(Site(rel, line, function, level, message, code, at))
    return text, sites


def scan():
    return {rel: scan_file(path, rel) for path, rel in rust_files()}


def one_line(message):
    """The message as a reader sees it: line continuations joined, `{}` kept."""
    if message is None:
        return '(message built elsewhere)'
    if message.startswith('(written by'):
        return message
    message = re.sub(r'\\\n\s*', '', message)
    return message.replace('\\n', ' ').replace('|', '\\|')


def write_doc(sites):
    rows = sorted((s for s in sites if s.code is not None), key=lambda s: s.code)
    out = [
        '# mod_rwsgi error-log codes',
        '',
        'Every line mod_rwsgi itself writes to the Apache error log starts with a code,',
        '`RW0001:` and so on, as Apache\'s own lines start with `AH00001:`. The code stays',
        'the same when the wording changes; grep the log for it, or look it up here. Lines',
        'that pass on what an application wrote (its `print()`, `wsgi.errors`, `logging`',
        'records through `mod_wsgi.LogHandler`) carry no code: they are the application\'s.',
        '',
        '`{...}` stands for a value filled in when the line is written. The level is the',
        'Apache log level the line is written at (`LogLevel rwsgi:LEVEL` shows it or hides it).',
        'This file is generated from the source by `build_support/log_codes.py --apply`;',
        '`make lint` and `tests/log_codes.rs` fail when the two disagree.',
        '',
        '| Code | Level | Where | Message |',
        '|------|-------|-------|---------|',
    ]
    for s in rows:
        out.append(f'| RW{s.code:04d} | {s.level} | `src/{s.rel}` | {one_line(s.message)} |')
    return '\n'.join(out) + '\n'


def check(files):
    problems = []
    seen = {}
    sites = [s for _, ss in files.values() for s in ss]
    for s in sites:
        where = f'src/{s.rel}:{s.line}'
        if s.code is None:
            problems.append(f'{where}: {s.function}(...) logs a line without an RW code')
            continue
        if s.code in seen:
            problems.append(f'{where}: RW{s.code:04d} is also used at {seen[s.code]}')
        seen[s.code] = where
    doc = open(DOC, encoding='utf-8').read() if os.path.exists(DOC) else ''
    if not problems and doc != write_doc(sites):
        problems.append('docs/error-reference.md differs from the source: run '
                        'build_support/log_codes.py --apply')
    return problems


def apply(files):
    sites = [s for _, ss in files.values() for s in ss]
    used = {s.code for s in sites if s.code is not None}
    next_code = max(used, default=0) + 1
    for rel, (text, ss) in files.items():
        edits = []
        for s in ss:
            if s.code is not None:
                continue
            s.code = next_code
            next_code += 1
            if isinstance(s.literal_at, tuple):  # no literal: wrap the expression
                start, end = s.literal_at
                expr = text[start:end].strip()
                inner = expr[1:] if expr.startswith('&') else expr
                if re.fullmatch(r'[a-z_][a-z0-9_]*', inner):
                    new = f'&format!("RW{s.code:04d}: {{{inner}}}")'
                else:
                    new = f'&format!("RW{s.code:04d}: {{}}", {inner})'
                edits.append((start, end, new))
                s.message = '{}'
            else:
                at = s.literal_at
                edits.append((at + 1, at + 1, f'RW{s.code:04d}: '))
        for start, end, new in sorted(edits, reverse=True):
            lead = text[start:end][:len(text[start:end]) - len(text[start:end].lstrip())]
            text = text[:start] + (lead if end > start else '') + new + text[end:]
        if edits:
            open(os.path.join(SRC, rel), 'w', encoding='utf-8').write(text)
    files = scan()
    sites = [s for _, ss in files.values() for s in ss]
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    open(DOC, 'w', encoding='utf-8').write(write_doc(sites))
    return check(files)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else '--check'
    files = scan()
    if mode == '--apply':
        problems = apply(files)
    elif mode == '--check':
        problems = check(files)
    else:
        sys.exit(__doc__)
    for p in problems:
        print(p, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
