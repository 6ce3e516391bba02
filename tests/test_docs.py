"""The documentation runs: every Python block of README.md and docs/*.md.

Each page's ```python blocks run in order in one fresh Python process, in a
temporary working directory, sharing one namespace (like the cells of a
notebook), so a later block may use what an earlier one defined or wrote.
A failure names the page and the line of the block's opening fence, and the
line numbers in its traceback are those of the page.

A block that cannot run here opts out with an HTML comment on the line just
before its fence, and says why in the block itself, as a comment a reader
sees:

    <!-- docs-test: skip (needs a training script file) -->
    ```python
    # needs a training script file
    ...
    ```

Output meant to be read rather than run is fenced as ```console or ```text.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from procs import child_env
from procs import keras_older_than

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
PAGE_TIMEOUT = 600  # seconds, for all the blocks of one page
# Pages whose blocks need a newer Keras than the oldest supported one: (version, why).
NEWER_KERAS_PAGES = {
    "docs/distributed.md": ((3, 8), "Keras < 3.8 cannot create a SeedGenerator under a tf.distribute strategy"),
}
# Pages whose blocks take more than a minute; their run is marked slow.
SLOW_PAGES = {
    "docs/sweeps.md": "three 30-seed sweeps, in-process, on a process pool and on Dask (~1.5 min idle)",
}

# The languages a fenced block may name. Only ``python`` blocks run; a block
# with no language (or "py", "python3" ...) would escape the test unnoticed.
LANGUAGES = {"python", "console", "text", "bash", "toml", "json", "yaml"}

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
_DIRECTIVE = re.compile(r"<!--\s*docs-test\b")
_SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip\s*\((?P<reason>[^()]*)\)\s*-->\s*$")
_DONE = "@@DOCS_TEST_DONE@@"
_TIMING = "@@DOCS_TEST_BLOCK@@"
# TensorFlow's start-up messages, left out of failure reports.
_NOISE = re.compile(r"^(I0000 |W0000 |WARNING: All log messages before absl|To enable the following instructions)")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    end: int  # 1-based line of the closing fence
    language: str
    source: str
    skip_reason: str | None  # from a `docs-test: skip (...)` comment just before it

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        body = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence):
                if not closing["info"]:
                    break
            body.append(re.sub(f"^ {{0,{indent}}}", "", lines[j]))  # the fence's indent, as CommonMark does
            j += 1
        else:
            raise AssertionError(f"{page.relative_to(ROOT)}:{i + 1}: code block never closed")
        skip = _SKIP.match(lines[i - 1]) if i > 0 else None
        blocks.append(
            Block(
                page=page,
                line=i + 1,
                end=j + 1,
                language=opening["info"].lower(),
                source="\n".join(body) + "\n",
                skip_reason=skip["reason"].strip() if skip else None,
            )
        )
        i = j + 1
    return blocks


def prose_lines(page: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines of a page outside fenced blocks."""
    lines = page.read_text(encoding="utf-8").splitlines()
    inside = set()
    for block in code_blocks(page):
        inside.update(range(block.line, block.end + 1))
    return [(n, text) for n, text in enumerate(lines, start=1) if n not in inside]


def python_blocks(page: Path) -> list[Block]:
    return [b for b in code_blocks(page) if b.language == "python"]


PAGES_WITH_CODE = [
    pytest.param(p, marks=[pytest.mark.slow] if str(p.relative_to(ROOT)) in SLOW_PAGES else [])
    for p in PAGES
    if any(b.skip_reason is None for b in python_blocks(p))
]

# Runs in the child: executes the blocks in one namespace and stops at the
# first failure. The blocks are compiled under the page's own path, and the
# child's line cache holds, for that path, the page with only its Python
# lines (each at its line number), so tracebacks show the page's lines and
# `inspect.getsource` (which AutoGraph uses on lambdas) reads Python.
_RUNNER = f"""
import json, linecache, sys, time, traceback
page = json.load(open(sys.argv[1], encoding="utf-8"))
lines = page["python_lines"].splitlines(keepends=True)
linecache.cache[page["file"]] = (len(page["python_lines"]), None, lines, page["file"])
namespace = {{"__name__": "__main__"}}
for block in page["blocks"]:
    code = compile("\\n" * block["line"] + block["source"], page["file"], "exec")
    start = time.perf_counter()
    try:
        exec(code, namespace)
        print(f"{_TIMING}{{block['where']}} {{time.perf_counter() - start:.1f}}", flush=True)
    except BaseException as error:
        sys.stdout.flush()
        print(f"\\nThe block at {{block['where']}} failed:", file=sys.stderr)
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)  # from the block's frame on
        sys.exit(1)
print({_DONE!r})
"""


def _python_lines(page: Path, blocks: list[Block]) -> str:
    """The text of `page` with only the lines of `blocks`, each at its line number, the others empty."""
    lines = [""] * len(page.read_text(encoding="utf-8").splitlines())
    for block in blocks:
        for offset, text in enumerate(block.source.splitlines()):
            lines[block.line + offset] = text  # the block's first line is line block.line + 1
    return "\n".join(lines) + "\n"


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def _report(stdout: str) -> str:
    """The child's output, with the blocks that ran as readable lines."""
    lines = []
    for line in stdout.splitlines():
        if line.startswith(_TIMING):
            where, seconds = line[len(_TIMING) :].rsplit(" ", 1)
            line = f"[the block at {where} ran in {seconds} s]"
        lines.append(line)
    return "\n".join(lines)


def test_there_is_a_page_per_feature_and_an_index():
    names = {p.name for p in DOCS.glob("*.md")}
    assert "README.md" in names, "docs/README.md, the index of the pages, is missing"
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    unlisted = sorted(name for name in names - {"README.md"} if f"({name}" not in index)
    assert not unlisted, f"docs/README.md does not link to {unlisted}"


def test_readme_shows_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    marker = next(i for i, line in enumerate(ci) if "the README's test command" in line)
    command = ci[marker + 1].strip()
    shown = [b.source for b in code_blocks(ROOT / "README.md") if b.language == "bash"]
    assert any(command in source.splitlines() for source in shown), (
        f"README.md no longer shows the command .ci/run runs: {command}"
    )


def test_every_public_name_is_documented():
    tree = ast.parse((ROOT / "keras_repro" / "__init__.py").read_text(encoding="utf-8"))
    (names,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
    ]
    docs = "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))
    missing = [name for name in names if not re.search(rf"(kr\.|`){re.escape(name)}\b", docs)]
    assert not missing, f"public names that no page in docs/ mentions (as `name` or kr.name): {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_block_names_an_allowed_language(page):
    bad = [f"{b.where} ({b.language or 'no language'})" for b in code_blocks(page) if b.language not in LANGUAGES]
    assert not bad, f"code blocks must be fenced as one of {sorted(LANGUAGES)}: {bad}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_skipped_blocks_say_why_in_the_block(page):
    skipped_lines = {b.line - 1 for b in python_blocks(page) if b.skip_reason is not None}
    for n, text in prose_lines(page):
        if _DIRECTIVE.search(text):
            assert _SKIP.match(text) and n in skipped_lines, (
                f"{page.relative_to(ROOT)}:{n}: {text.strip()!r} is not a "
                "'<!-- docs-test: skip (reason) -->' line just before a ```python block"
            )
    for block in python_blocks(page):
        if block.skip_reason is None:
            continue
        assert block.skip_reason, f"{block.where}: the skip comment gives no reason"
        comments = [line.split("#", 1)[1].strip().lower() for line in block.source.splitlines() if "#" in line]
        assert any(block.skip_reason.lower() in c for c in comments), (
            f"{block.where} is skipped ({block.skip_reason}) but does not say so in a comment "
            f"of its own: add '# {block.skip_reason}' to the block"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_compile(page):
    for block in python_blocks(page):
        try:
            compile("\n" * block.line + block.source, str(block.page), "exec")
        except SyntaxError as error:
            pytest.fail(f"the block at {block.where} is not valid Python: {error}", pytrace=False)


@pytest.mark.tensorflow_only("the pages' examples are written for TensorFlow")
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, tmp_path):
    needs = NEWER_KERAS_PAGES.get(str(page.relative_to(ROOT)))
    if needs is not None and keras_older_than(*needs[0]):
        pytest.skip(needs[1])
    runnable = [b for b in python_blocks(page) if b.skip_reason is None]
    listing = tmp_path / "page.json"
    listing.write_text(
        json.dumps(
            {
                "file": str(page),
                "python_lines": _python_lines(page, runnable),
                "blocks": [{"where": b.where, "line": b.line, "source": b.source} for b in runnable],
            }
        ),
        encoding="utf-8",
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = child_env({"MPLBACKEND": "Agg"})
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUNNER, str(listing)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=PAGE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(
            f"{page.relative_to(ROOT)}: the blocks did not finish in {PAGE_TIMEOUT} s\n"
            f"stdout:\n{_report(_text(error.stdout))[-3000:]}\nstderr:\n{_text(error.stderr)[-3000:]}",
            pytrace=False,
        )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or _DONE not in proc.stdout:
        stderr = "\n".join(line for line in proc.stderr.splitlines() if not _NOISE.match(line))
        pytest.fail(
            f"{page.relative_to(ROOT)} (exit {proc.returncode}):\n"
            f"stdout:\n{_report(proc.stdout)[-3000:]}\nstderr:\n{stderr[-6000:]}",
            pytrace=False,
        )
    times = [line[len(_TIMING) :].rsplit(" ", 1) for line in proc.stdout.splitlines() if line.startswith(_TIMING)]
    each = ", ".join(f"{where} {seconds} s" for where, seconds in times)
    print(f"{page.relative_to(ROOT)}: {len(runnable)} blocks in {elapsed:.1f} s ({each})")


# ------------------------------------------------------------------- links

_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(?P<target>\S+?)>?(?:\s.*)?$")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a page."""
    seen: dict[str, int] = {}
    anchors = set()
    for _, text in prose_lines(page):
        heading = _HEADING.match(text)
        if not heading:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading["title"])  # a link's text
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of the links of a page, outside code; a link's text may wrap."""
    prose = dict(prose_lines(page))
    count = len(page.read_text(encoding="utf-8").splitlines())
    text = "\n".join(_INLINE_CODE.sub("", prose.get(n, "")) for n in range(1, count + 1))
    found = [(text.count("\n", 0, m.start("target")) + 1, m["target"]) for m in _LINK.finditer(text)]
    for n, line in prose.items():
        reference = _REFERENCE.match(line)
        if reference:
            found.append((n, reference["target"]))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page):
    broken = []
    for n, target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{page.relative_to(ROOT)}:{n}: {target} (no file {path})")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{page.relative_to(ROOT)}:{n}: {target} (no heading #{anchor} in {path or page.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)
