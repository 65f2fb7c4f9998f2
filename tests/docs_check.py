"""What tests/test_docs.py checks in README.md and docs/: links, anchors and the commands shown.

* **Links.** Every inline Markdown link or image ``[text](target)`` outside code whose target is not a URL must
  name a file or folder of the repository, relative to the page; a ``#anchor`` must be a heading of the target
  page (GitHub's slugs: lower case, spaces to ``-``, punctuation dropped, ``-1``, ``-2`` for repeats) or an
  ``id``/``name`` of an HTML tag in it.
* **Commands.** Every ``python X.py ...``, ``python -m X ...`` and ``torchrun ... X.py ...`` in a code block or
  code span must name an entry point of the repository; every ``--flag`` it shows must appear in that entry
  point's ``--help``; every dotted override ``section.key=value`` given to ``train.py``, ``evaluate.py`` or
  ``training.cross_validate`` must name a key of the configuration tree.

Help texts are collected in one child process (``--help`` of each entry point, run as ``__main__``), so the
check costs one interpreter start and the project's imports once.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTERNAL_MODULES = {"pytest", "venv", "pip", "tensorboard", "torch.distributed.run"}   # not ours: not checked
FENCE = re.compile(r"^(\s*)(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
HTML_ID = re.compile(r"<[a-zA-Z][^>]*\s(?:id|name)=\"([^\"]+)\"")
OVERRIDE = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)=")


def documentation_files(root: Path = REPO) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


# ---------------------------------------------------------------------------------------------- markdown parts

def split_code(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, code-block lines): lines inside fenced blocks go to the second list, fences dropped."""
    prose, code, fence = [], [], None
    for line in text.splitlines():
        m = FENCE.match(line)
        if m and (fence is None or line.strip().startswith(fence)):
            fence = m.group(2) if fence is None else None
            continue
        (code if fence else prose).append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor of a heading's text: markup removed, lower case, spaces to '-', punctuation dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)          # [text](url) -> text
    text = text.replace("`", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)                                 # keeps letters, digits, _, -, spaces
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    prose, _ = split_code(text)
    found, seen = set(), {}
    for line in prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            found.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
        found.update(HTML_ID.findall(line))
    return found


def links(text: str) -> list[str]:
    prose, _ = split_code(text)
    out = []
    for line in prose:
        line = CODE_SPAN.sub("", line)
        out.extend(LINK.findall(line))
    return out


def broken_links(files: list[Path], root: Path = REPO) -> list[str]:
    """'page: target (why)' for every relative link or anchor that does not resolve."""
    problems, cache = [], {}

    def anchors_of(path: Path) -> set[str]:
        if path not in cache:
            cache[path] = anchors(path.read_text(encoding="utf-8"))
        return cache[path]

    for page in files:
        for target in links(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):                    # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page.resolve()
            where = f"{page.relative_to(root)}: {target}"
            if not dest.exists():
                problems.append(f"{where} (no such file)")
            elif root.resolve() not in dest.parents and dest != root.resolve():
                problems.append(f"{where} (outside the repository)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors_of(dest):
                problems.append(f"{where} (no heading with this anchor in {dest.name})")
    return problems


# ---------------------------------------------------------------------------------------------- commands

@dataclass
class Command:
    page: str
    text: str
    entry: str                  # 'train.py' or a module name 'data.prepare'
    flags: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


def _command_lines(text: str) -> list[str]:
    """Code-block lines (continuations joined) and code spans that may hold a command."""
    prose, code = split_code(text)
    joined, buf = [], ""
    for line in code:
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        joined.append(buf)
        buf = ""
    if buf:
        joined.append(buf)
    spans = [m.group(2) for line in prose for m in CODE_SPAN.finditer(line)]
    return joined + spans


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:                                   # an unbalanced quote in prose: split on spaces
        return line.split()


def parse_commands(text: str, page: str) -> list[Command]:
    commands = []
    for line in _command_lines(text):
        tokens = _tokens(line)
        # one line may chain several commands
        pieces, cur = [], []
        for tok in tokens:
            if tok in {"&&", "||", "|", ";"} or tok.endswith(";"):
                if tok.endswith(";") and tok != ";":
                    cur.append(tok[:-1])
                pieces.append(cur)
                cur = []
            else:
                cur.append(tok)
        pieces.append(cur)
        for piece in pieces:
            cmd = _one_command(piece, page, line)
            if cmd is not None:
                commands.append(cmd)
    return commands


def _one_command(tokens: list[str], page: str, line: str) -> Command | None:
    i = 0
    while i < len(tokens) and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[i]):       # VAR=value prefixes
        i += 1
    tokens = [t.lstrip("(") for t in tokens[i:]]
    if not tokens:
        return None
    head = Path(tokens[0]).name
    if head in {"python", "python3"}:
        rest = tokens[1:]
        if not rest or rest[0] == "-c":
            return None
        if rest[0] == "-m":
            if len(rest) < 2:
                return None
            entry, args = rest[1], rest[2:]
        elif rest[0].endswith(".py"):
            entry, args = rest[0], rest[1:]
        else:
            return None
    elif head == "torchrun":
        script = next((k for k, t in enumerate(tokens) if t.endswith(".py")), None)
        if script is None:
            return None
        entry, args = tokens[script], tokens[script + 1:]
    else:
        return None
    if entry.split(".")[0] in EXTERNAL_MODULES or entry in EXTERNAL_MODULES:
        return None
    flags = []
    for tok in args:
        m = re.match(r"^\[*(--[a-zA-Z][\w-]*)", tok)
        if m:
            flags.append(m.group(1))
    overrides = [m.group(1) for tok in args if (m := OVERRIDE.match(tok.lstrip("['\"")))]
    return Command(page, line.strip(), entry, flags, overrides)


def entry_point_exists(entry: str, root: Path = REPO) -> bool:
    if entry.endswith(".py"):
        return (root / entry).is_file()
    path = root / Path(*entry.split("."))
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


_HELP_CHILD = r"""
import contextlib, io, json, runpy, sys
out = {}
for entry in json.loads(sys.argv[1]):
    buf = io.StringIO()
    sys.argv = [entry, "--help"]
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            if entry.endswith(".py"):
                runpy.run_path(entry, run_name="__main__")
            else:
                runpy.run_module(entry, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    except Exception as exc:
        buf.write(f"\nHELP FAILED: {type(exc).__name__}: {exc}")
    out[entry] = buf.getvalue()
print(json.dumps(out))
"""


def help_texts(entries: list[str], root: Path = REPO, timeout: float = 3600) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", _HELP_CHILD, json.dumps(sorted(entries))], cwd=root,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"collecting --help failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def accepted_flags(help_text: str) -> set[str]:
    return set(re.findall(r"--[a-zA-Z][\w-]*", help_text))


def config_keys() -> set[str]:
    """Every dotted key of the configuration tree (sections and leaves), from the default preset."""
    from runconfig import load_config

    keys: set[str] = set()

    def walk(node, prefix: str) -> None:
        items = (((f.name, getattr(node, f.name)) for f in dataclasses.fields(node))
                 if dataclasses.is_dataclass(node) else node.items() if isinstance(node, dict) else ())
        for name, value in items:
            key = f"{prefix}{name}"
            keys.add(key)
            walk(value, key + ".")

    walk(load_config(None, []), "")
    return keys


OVERRIDE_ENTRIES = {"train.py", "evaluate.py", "training.cross_validate"}


def command_problems(commands: list[Command], helps: dict[str, str], keys: set[str]) -> list[str]:
    problems = []
    for c in commands:
        where = f"{c.page}: `{c.text[:120]}`"
        if not entry_point_exists(c.entry):
            problems.append(f"{where}: no entry point {c.entry}")
            continue
        text = helps.get(c.entry, "")
        if "usage:" not in text or "HELP FAILED" in text:
            problems.append(f"{where}: `{c.entry} --help` printed no usage: {text[-300:]!r}")
            continue
        known = accepted_flags(text)
        problems += [f"{where}: {c.entry} has no option {f}" for f in c.flags if f not in known]
        if c.entry in OVERRIDE_ENTRIES:
            problems += [f"{where}: no configuration key {k}" for k in c.overrides if k not in keys]
    return problems
