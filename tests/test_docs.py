"""The documentation cannot drift from the code: the site builds with --strict, and every `console` example in
the docs and the README is run, its exit status and its key lines checked.

A `console` block holds `$ sksearch ...` commands, each followed by the output it shows. Each shown line must
appear in the real output, in order (`...` inside a line matches anything; a line of only `...` stands for
lines left out); a block whose output shows an `error:` line expects exit status 2, else 0. The commands run
in a scratch folder holding copies of studies/ and search_spaces/ plus the docs' example study
`studies/demo.yaml` (tests/results/conftest.py's study, written through the production writers). Examples that
train for minutes or need ImageNet or several GPUs are shown in `text` or `bash` blocks instead, and the
end-to-end tests cover them.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sksearch import cli
from tests.results.conftest import make_results_study

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]


def console_examples(text: str) -> list[tuple[str, list[str]]]:
    """[(command, shown output lines)] of every ```console block, in order."""
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```console\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            elif examples:
                examples[-1][1].append(line)
    return examples


def _matches(shown: str, real: str) -> bool:
    pattern = ".*".join(re.escape(part.strip()) for part in shown.split("..."))
    return re.fullmatch(pattern, real.strip()) is not None


def shown_in(shown: list[str], real: list[str]) -> str | None:
    """None when every shown line is found in `real`, in order; else the first one that is not."""
    at = 0
    for line in shown:
        if not line.strip() or line.strip() == "...":
            continue
        while at < len(real) and not _matches(line, real[at]):
            at += 1
        if at == len(real):
            return line
        at += 1
    return None


EXAMPLES = [(page, command, shown) for page in PAGES
            for command, shown in console_examples(page.read_text())]


def test_the_docs_hold_console_examples_and_the_matcher_can_fail():
    assert len(EXAMPLES) >= 6, [e[1] for e in EXAMPLES]
    assert shown_in(["a ... c", "...", "e"], ["x", "a b c", "d", "e"]) is None
    assert shown_in(["e", "a b c"], ["a b c", "e"]) == "a b c"  # order matters
    assert shown_in(["total 27.5M"], ["total 27.6M"]) == "total 27.5M"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs")
    for folder in ("studies", "search_spaces"):
        shutil.copytree(ROOT / folder, root / folder)
    cwd = os.getcwd()
    os.chdir(root)  # the example study's paths are relative to where its commands run
    try:
        make_results_study(Path("studies"), name="demo")
    finally:
        os.chdir(cwd)
    return root


@pytest.mark.parametrize("page, command, shown", EXAMPLES,
                         ids=[f"{p.relative_to(ROOT)}:{c[:50]}" for p, c, _ in EXAMPLES])
def test_console_example_runs_as_shown(page: Path, command: str, shown: list[str], workspace: Path,
                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    # In process, through the console script's own entry point (a subprocess would spend seconds importing).
    argv = shlex.split(command)
    assert argv[0] == "sksearch", f"{page}: a console example runs sksearch, not {argv[0]!r}"
    monkeypatch.chdir(workspace)
    before = set(workspace.iterdir())
    try:
        try:
            status = cli.main(argv[1:])
        except SystemExit as exc:  # argparse's own usage errors
            status = exc.code
    finally:  # what an example writes (an export's --out) must not make the same example elsewhere fail
        for made in set(workspace.iterdir()) - before:
            shutil.rmtree(made) if made.is_dir() else made.unlink()
    out = capsys.readouterr()
    real = (out.out + out.err).splitlines()
    expected = 2 if any(line.startswith("error:") for line in shown) else 0
    assert status == expected, f"{page}: `{command}` exited {status}\n" + "\n".join(real[-20:])
    missing = shown_in(shown, real)
    assert missing is None, f"{page}: `{command}` does not print\n  {missing}\nit printed:\n" + "\n".join(real)


@pytest.mark.slow
def test_the_site_builds_strict(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    home = (tmp_path / "site" / "index.html").read_text()
    assert "Two commands on a fresh machine" in home
    reference = (tmp_path / "site" / "reference" / "study-file" / "index.html").read_text()
    assert "tune.scheduler.keep_most_accurate" in reference
