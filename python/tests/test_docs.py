"""Every code block of the documentation runs: docs/**/*.md, README.md and CONTRIBUTING.md.

One test per page. Each page gets its own temporary directory; before its first block that
runs, ``ibarrow demo --write-config demo.toml`` is run there (the demo's SQLite databases are
made once per session, in the directory ``IBARROW_DEMO_DIR`` names). Then, in order:

- ```text   shown output, a synopsis, a file tree: not run.
- ```sh     run with ``bash -euo pipefail`` in the page's directory, ``ibarrow`` on PATH; must
            exit 0.
- ```sql    written to a file and run as ``ibarrow --config demo.toml -f FILE``; must exit 0.
- ```python all blocks of the page run in order in one namespace, the page's directory the
            current directory.
- ```toml   written to a file and checked with
            ``ibarrow config check --no-connect --config FILE``; every ``${env:NAME}`` and
            ``${NAME}`` in it is set in the environment first (to a placeholder, unless the
            environment has it). ``${file:...}`` cannot be satisfied here.
- ```rust   compiled as doctests of the ``ibarrow`` crate elsewhere, so skipped here; allowed
            only on the pages of RUST_DOCTEST_PAGES, which are wired into those doctests.
- any other language, or none: the test fails, naming the file and line.

``<!-- not-run: reason -->`` on the line directly before a fence skips that block; the reason
is required. The binary is ``$IBARROW_BIN``, else ``$CARGO_TARGET_DIR/debug/ibarrow``, else
``~/.cache/ibarrow-target/debug/ibarrow``; a page with blocks to run fails without it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Pages whose ```rust blocks the lead compiles as rustdoc doctests of the `ibarrow` crate.
RUST_DOCTEST_PAGES = ["docs/rust.md", "docs/getting-started.md", "README.md"]

# Seconds each subprocess, and each python block, may take.
TIMEOUT = 120

# Lines of stdout/stderr shown when a block fails.
TAIL = 40

NOT_RUN = {"text", "rust"}
RUN = {"sh", "sql", "python", "toml"}
LANGUAGES = NOT_RUN | RUN

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
NOT_RUN_MARKER = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")
REFERENCE = re.compile(r"\$\{(?P<ref>[^}]*)\}")


@dataclass
class Block:
    """One fenced code block of a page."""

    page: str
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    not_run: str | None  # the reason given by <!-- not-run: reason -->, when there is one

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[str]:
    """The pages checked, as paths relative to the repository root."""
    found = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))
    for name in ("README.md", "CONTRIBUTING.md"):
        if (ROOT / name).is_file():
            found.append(name)
    return found


def _language(info: str) -> str:
    """The language of an info string: its first word, up to a comma (```rust,no_run)."""
    words = info.split()
    return re.split(r"[,{]", words[0], maxsplit=1)[0] if words else ""


def _dedent(line: str, indent: str) -> str:
    """``line`` without the fence's indentation (a fence inside a list item)."""
    return line[len(indent):] if line.startswith(indent) else line.lstrip(" \t")


def parse_blocks(page: str, text: str) -> tuple[list[Block], list[str]]:
    """The fenced code blocks of ``text`` and what is wrong with the page's markup."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = NOT_RUN_MARKER.match(line)
        opening = FENCE.match(line)
        if marker and not (index + 1 < len(lines) and FENCE.match(lines[index + 1])):
            problems.append(
                f"{page}:{index + 1}: <!-- not-run: ... --> must be on the line directly "
                "before a code block's fence"
            )
        if not opening:
            index += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        start = index + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        index += 1
        while index < len(lines) and not closing.match(lines[index]):
            body.append(_dedent(lines[index], indent))
            index += 1
        if index >= len(lines):
            problems.append(f"{page}:{start}: this code block is never closed")
        index += 1
        not_run = None
        if start >= 2 and (previous := NOT_RUN_MARKER.match(lines[start - 2])):
            not_run = previous["reason"].strip()
            if not not_run:
                problems.append(
                    f"{page}:{start - 1}: <!-- not-run: --> needs a reason, e.g. "
                    "<!-- not-run: needs a SQL Server -->"
                )
        block = Block(page, start, _language(info), "\n".join(body) + "\n", not_run)
        blocks.append(block)
        if not block.language:
            problems.append(
                f"{block.where}: a code block without a language; write ```text for output, "
                f"or one of {', '.join(sorted(LANGUAGES))}"
            )
        elif block.language not in LANGUAGES:
            problems.append(
                f"{block.where}: ```{block.language} is not a language the docs test knows; "
                f"use one of {', '.join(sorted(LANGUAGES))} (```text is shown, not run)"
            )
        elif block.language == "rust" and page not in RUST_DOCTEST_PAGES:
            problems.append(
                f"{block.where}: ```rust blocks are compiled as doctests only on "
                f"{', '.join(RUST_DOCTEST_PAGES)}; move it there or add the page to "
                "RUST_DOCTEST_PAGES (python/tests/test_docs.py) and to the doctests"
            )
        elif block.language == "toml" and not_run is None:
            if any(m["ref"].startswith("file:") for m in REFERENCE.finditer(block.code)):
                problems.append(
                    f"{block.where}: this toml block reads a secret file (${{file:...}}), "
                    "which the docs test cannot provide; put <!-- not-run: reason --> before it"
                )
    return blocks, problems


def ibarrow_bin() -> Path:
    """The ibarrow binary the blocks run; the test fails when there is none."""
    given = os.environ.get("IBARROW_BIN")
    if given:
        path = Path(given).expanduser()
        if not path.is_file() and (found := shutil.which(given)):
            path = Path(found)
        if not path.is_file():
            pytest.fail(f"IBARROW_BIN={given} is not a file; build ibarrow or fix IBARROW_BIN")
        return path.resolve()
    candidates = []
    if target := os.environ.get("CARGO_TARGET_DIR"):
        target_dir = Path(target).expanduser()
        if not target_dir.is_absolute():
            target_dir = ROOT / target_dir
        candidates.append(target_dir / "debug" / "ibarrow")
    candidates.append(Path.home() / ".cache" / "ibarrow-target" / "debug" / "ibarrow")
    for path in candidates:
        if path.is_file():
            return path.resolve()
    pytest.fail(
        "no ibarrow binary: set IBARROW_BIN, or build it (cargo build -p ibarrow-repl) into "
        + " or ".join(str(p) for p in candidates)
    )


def _tail(text: str) -> str:
    lines = text.rstrip("\n").splitlines()
    shown = lines[-TAIL:]
    cut = f"(last {TAIL} of {len(lines)} lines)\n" if len(lines) > TAIL else ""
    return cut + "\n".join(shown)


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _failure(block: Block, what: str, stdout: str, stderr: str) -> str:
    return (
        f"{block.where}: the {block.language} block {what}\n"
        f"--- the block ---\n{_tail(block.code)}\n"
        f"--- stdout ---\n{_tail(stdout)}\n"
        f"--- stderr ---\n{_tail(stderr)}"
    )


class _BlockTimeout(BaseException):
    """Raised in a python block that runs too long (a BaseException, so that the block's own
    ``except Exception`` does not swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: int):
    """SIGALRM after ``seconds`` where signals can be used (the main thread on Unix)."""
    usable = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise _BlockTimeout(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class PageRun:
    """Runs the blocks of one page, in order, in the page's directory."""

    def __init__(self, page: str, work: Path, scratch: Path, env: dict[str, str], binary: Path):
        self.page = page
        self.work = work
        self.scratch = scratch
        self.env = env
        self.binary = binary
        self.namespace: dict[str, object] = {"__name__": "__docs__"}
        self.demo_ready = False

    def run(self, block: Block) -> None:
        if not self.demo_ready:
            self._command(
                block,
                [str(self.binary), "demo", "--write-config", "demo.toml"],
                self.env,
                "could not run: the demo set-up before it ",
            )
            self.demo_ready = True
        if block.language == "sh":
            script = self._write(block, "sh")
            self._command(block, ["bash", "-euo", "pipefail", str(script)], self.env)
        elif block.language == "sql":
            statements = self._write(block, "sql")
            command = [str(self.binary), "--config", "demo.toml", "-f", str(statements)]
            self._command(block, command, self.env)
        elif block.language == "toml":
            config = self._write(block, "toml")
            command = [str(self.binary), "config", "check", "--no-connect"]
            command += ["--config", str(config)]
            self._command(block, command, self._with_references(block))
        elif block.language == "python":
            self._python(block)

    def _write(self, block: Block, suffix: str) -> Path:
        path = self.scratch / f"block-{block.line}.{suffix}"
        path.write_text(block.code)
        return path

    def _with_references(self, block: Block) -> dict[str, str]:
        """The environment with each ${env:NAME} and ${NAME} of the block set."""
        env = dict(self.env)
        for match in REFERENCE.finditer(block.code):
            ref = match["ref"]
            name = ref[len("env:"):] if ref.startswith("env:") else ref
            if name and ":" not in name and "=" not in name and name not in env:
                env[name] = "placeholder"
        return env

    def _command(
        self, block: Block, command: list[str], env: dict[str, str], before: str = ""
    ) -> None:
        """Runs ``command`` in the page's directory; a failure names the block. ``before``
        says what was run on the block's behalf, when it is not the block itself."""
        shown = " ".join(command)
        try:
            done = subprocess.run(
                command, cwd=self.work, env=env, capture_output=True, text=True, timeout=TIMEOUT
            )
        except subprocess.TimeoutExpired as err:
            pytest.fail(
                _failure(
                    block,
                    f"{before}did not finish within {TIMEOUT} s ({shown})",
                    _text(err.stdout),
                    _text(err.stderr),
                ),
                pytrace=False,
            )
        if done.returncode != 0:
            pytest.fail(
                _failure(
                    block,
                    f"{before}exited with status {done.returncode} ({shown})",
                    done.stdout,
                    done.stderr,
                ),
                pytrace=False,
            )

    def _python(self, block: Block) -> None:
        # Line numbers of tracebacks are the page's own.
        code = compile("\n" * block.line + block.code, str(ROOT / self.page), "exec")
        stdout, stderr = io.StringIO(), io.StringIO()
        before = Path.cwd()
        os.chdir(self.work)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                with _time_limit(TIMEOUT):
                    exec(code, self.namespace)
        except (Exception, _BlockTimeout):
            what = f"raised\n{traceback.format_exc()}"
        else:
            what = None
        finally:
            os.chdir(before)
        if what is not None:
            pytest.fail(_failure(block, what, stdout.getvalue(), stderr.getvalue()), pytrace=False)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the demo's databases are made, once for the whole session."""
    return tmp_path_factory.mktemp("ibarrow-demo")


@pytest.fixture(scope="session")
def tools_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory put first on PATH, holding `ibarrow`."""
    return tmp_path_factory.mktemp("ibarrow-bin")


@pytest.mark.parametrize("page", pages())
def test_page(
    page: str,
    tmp_path: Path,
    demo_dir: Path,
    tools_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks, problems = parse_blocks(page, (ROOT / page).read_text())
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    to_run = [b for b in blocks if b.language in RUN and b.not_run is None]
    if not to_run:
        return
    binary = ibarrow_bin()
    link = tools_dir / "ibarrow"
    if not link.exists():
        link.symlink_to(binary)
    work = tmp_path / "page"
    scratch = tmp_path / "blocks"
    work.mkdir()
    scratch.mkdir()
    path = f"{tools_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    # Python blocks run in this process: the same environment as the commands.
    monkeypatch.setenv("IBARROW_DEMO_DIR", str(demo_dir))
    monkeypatch.setenv("PATH", path)
    monkeypatch.delenv("IBARROW_PROFILE", raising=False)
    env = dict(os.environ)
    run = PageRun(page, work, scratch, env, binary)
    for block in to_run:
        run.run(block)


def test_the_block_reader() -> None:
    text = "\n".join(
        [
            "# Page",  # 1
            "```sh",  # 2
            "echo hi",  # 3
            "```",  # 4
            "<!-- not-run: needs a SQL Server -->",  # 5
            "```toml",  # 6
            'a = "${file:/run/secrets/x}"',  # 7
            "```",  # 8
            "- item",  # 9
            "  ```python",  # 10
            "  x = 1",  # 11
            "  ```",  # 12
            "````text",  # 13
            "```sql",  # 14
            "````",  # 15
            "```json",  # 16
            "{}",  # 17
            "```",  # 18
            "```",  # 19
            "x",  # 20
            "```",  # 21
            "<!-- not-run: -->",  # 22
            "```rust,no_run",  # 23
            "```",  # 24
            "<!-- not-run: a marker far from its block -->",  # 25
            "",  # 26
            "```toml",  # 27
            'b = "${file:/run/secrets/y}"',  # 28
        ]
    )
    blocks, problems = parse_blocks("docs/x.md", text)
    assert [(b.line, b.language, b.not_run) for b in blocks] == [
        (2, "sh", None),
        (6, "toml", "needs a SQL Server"),
        (10, "python", None),
        (13, "text", None),
        (16, "json", None),
        (19, "", None),
        (23, "rust", ""),
        (27, "toml", None),
    ]
    assert blocks[2].code == "x = 1\n"
    assert blocks[3].code == "```sql\n"
    expected = [
        "docs/x.md:16: ```json is not a language",
        "docs/x.md:19: a code block without a language",
        "docs/x.md:22: <!-- not-run: --> needs a reason",
        "docs/x.md:23: ```rust blocks are compiled as doctests only on",
        "docs/x.md:25: <!-- not-run: ... --> must be on the line directly before",
        "docs/x.md:27: this code block is never closed",
        "docs/x.md:27: this toml block reads a secret file",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected), problems
