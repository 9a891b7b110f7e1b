"""References stay honest: the project cites only what it contains.

(a) Every citation of the math reference in the form "docs/math.md" followed by a section number
    (a single number, a range "0-1" or a list "3, 4.1" / "4.1 and 4.3"), in any *.py or *.md file
    of the repository, names a section heading that exists in docs/math.md.
(b) Every repo-relative file path that a docstring, a comment or a Markdown file mentions
    (refvae/..., analytic/..., tests/..., docs/..., examples/..., benchmarks/... with a file
    extension, or a bare upper-case Markdown name such as README.md) exists in the repository.
(c) Nothing points outside the repository: the math reference is cited by its path in the repo,
    never by a bare file name, and no absolute path of a development machine appears.

The detectors are tested on synthetic text too, so a regex that silently matches nothing fails.
"""
import ast
import functools
import io
import pathlib
import re
import tokenize

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MATH = ROOT / "docs" / "math.md"
SOURCE_DIRS = ("refvae", "analytic", "tests", "examples", "benchmarks", "docs")
SKIP_PARTS = {"__pycache__", ".hypothesis", ".pytest_cache", ".venv", "verify-out"}

# a section number: 0, 2, 2.1, 4.7 (a trailing sentence full stop is not part of it)
_SEC = r"\d+(?:\.\d+)*"
# "docs/math.md" + one section, a range (0-1, 4.2-4.3) or a list (3, 4.1 / 4.1 and 4.3)
_CITATION = re.compile(r"docs/math\.md[ \t]+(" + _SEC + r"(?:[ \t]*(?:-|,|and)[ \t]*" + _SEC + r")*)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(" + _SEC + r")\.?[ \t]", re.M)
# Source folders whose files a text may cite; a path needs an extension to count as a file name.
_PATH = re.compile(r"(?<![\w./-])(?:\./)?((?:refvae|analytic|tests|docs|examples|benchmarks)/[\w./-]*?"
                   r"\.(?:py|md|txt|json|toml|cfg|ini|npz|csv|ipynb|sh|yml|yaml))(?![\w/-])")
_ROOT_MD = re.compile(r"(?<![\w./-])([A-Z][A-Z0-9_]*\.md)(?![\w/-])")
_OUTSIDE = [(re.compile(r"(?<![\w./-])math\.md", re.I), "math.md without docs/ (the reference is docs/math.md)"),
            (re.compile(r"/work/"), "an absolute /work/ path (outside the repository)")]
# sections the issue fixed (docstrings cite them): they must keep their numbers
REQUIRED_SECTIONS = ("0", "1", "2.1", "2.2", "2.3", "2.4", "2.5", "3",
                     "4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "5")


def repo_files():
    """*.py and *.md files of the repository (top-level Markdown and the source folders)."""
    files = sorted(ROOT.glob("*.md"))
    for d in SOURCE_DIRS:
        if (ROOT / d).is_dir():
            files += sorted(p for p in (ROOT / d).rglob("*")
                            if p.suffix in (".py", ".md") and p.is_file() and not SKIP_PARTS & set(p.parts))
    return files


def headings(text):
    """Section numbers of the numbered Markdown headings in ``text``, in order."""
    return _HEADING.findall(text)


def cited_sections(text):
    """(line, citation text, [section numbers it needs]) for every docs/math.md citation.

    A range "a-b" needs both ends; a list needs each member.
    """
    out = []
    for m in _CITATION.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        needed = re.findall(_SEC, m.group(1))
        out.append((line, m.group(0), needed))
    return out


def prose_of_python(source):
    """(line, text) of the docstrings, other bare string statements and comments of Python source."""
    pieces = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            pieces.append((node.lineno, node.value.value))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            pieces.append((tok.start[0], tok.string))
    return pieces


def mentioned_paths(text):
    """(offset line, path) of every repo-relative file path in ``text`` (see the module docstring)."""
    out = []
    for rx in (_PATH, _ROOT_MD):
        for m in rx.finditer(text):
            out.append((text.count("\n", 0, m.start()), m.group(1)))
    return out


@functools.lru_cache(maxsize=None)
def _prose(path):
    """The prose of a repository file (parsed once per session: two tests read it)."""
    text = path.read_text(encoding="utf-8")
    return prose_of_python(text) if path.suffix == ".py" else [(1, text)]


def _rel(path):
    return path.relative_to(ROOT).as_posix()


# ---------------------------------------------------------------------------------------- (a)

def test_math_reference_keeps_the_cited_numbering():
    found = headings(MATH.read_text(encoding="utf-8"))
    missing = [s for s in REQUIRED_SECTIONS if s not in found]
    assert not missing, f"docs/math.md lost the sections {missing}"
    dupes = sorted({s for s in found if found.count(s) > 1})
    assert not dupes, f"docs/math.md numbers several headings {dupes}"


def test_every_math_citation_names_an_existing_section():
    sections = set(headings(MATH.read_text(encoding="utf-8")))
    bad, count = [], 0
    for path in repo_files():
        for line, cite, needed in cited_sections(path.read_text(encoding="utf-8")):
            count += 1
            missing = [s for s in needed if s not in sections]
            if missing:
                bad.append(f"{_rel(path)}:{line}: {cite!r} (no section {', '.join(missing)})")
    # the code cites the reference ~190 times: a detector that finds almost nothing is broken
    assert count >= 150, f"found only {count} docs/math.md citations; the detector is broken"
    assert not bad, "citations of sections docs/math.md does not have:\n" + "\n".join(bad)


# ---------------------------------------------------------------------------------------- (b)

def test_every_mentioned_file_exists():
    bad, count = [], 0
    for path in repo_files():
        for line, text in _prose(path):
            for offset, name in mentioned_paths(text):
                count += 1
                if not (ROOT / name).is_file():
                    bad.append(f"{_rel(path)}:{line + offset}: {name}")
    assert count >= 20, f"found only {count} file mentions; the detector is broken"
    assert not bad, "files mentioned but not in the repository:\n" + "\n".join(bad)


# ---------------------------------------------------------------------------------------- (c)

def test_nothing_points_outside_the_repository():
    bad = []
    for path in repo_files():
        for line, text in _prose(path):
            for rx, what in _OUTSIDE:
                for m in rx.finditer(text):
                    bad.append(f"{_rel(path)}:{line + text.count(chr(10), 0, m.start())}: {what}")
    assert not bad, "references outside the repository:\n" + "\n".join(bad)


# -------------------------------------------------------------------- the detectors themselves
# The citations below are assembled from pieces so that this file's own text holds none.
_M = "docs/math" + ".md"


def test_citation_detector_reads_single_ranges_and_lists():
    text = (f"see {_M} 4.6.\nsee {_M} 0-1 and {_M} 3, 4.1\n{_M} 4.1 and 4.3; "
            f"window ({_M} 2.3 10-15); {_M} lists them")
    got = [needed for _, _, needed in cited_sections(text)]
    assert got == [["4.6"], ["0", "1"], ["3", "4.1"], ["4.1", "4.3"], ["2.3"]]
    assert [line for line, _, _ in cited_sections(text)] == [1, 2, 2, 3, 3]


def test_heading_detector():
    text = "# Title\n## The papers\n## 0. Conventions\n### 2.1 IWAE\n#### 3.1.2 Deep\nnot 4.4 a heading\n"
    assert headings(text) == ["0", "2.1", "3.1.2"]


def test_path_detector_is_precise():
    text = ("tests/test_docs.py::test_x, (benchmarks/step" + "_bench.py). docs/tutorial" + ".md\n"
            "not refvae/analytic nor ref/refvae/x" + ".py nor verify-out/report.json; README" + ".md;"
            " refvae/verify/claims/* and tests/theorems")
    assert [p for _, p in mentioned_paths(text)] == ["tests/test_docs.py", "benchmarks/step_bench.py",
                                                     "docs/tutorial.md", "README.md"]


def test_prose_of_python_reads_docstrings_and_comments_only():
    src = ('"""Module doc, see examples/a' + '.py."""\n'
           'x = "examples/b' + '.py"  # comment: examples/c' + '.py\n'
           'def f():\n    """Function doc: examples/d' + '.py"""\n')
    found = sorted(p for line, text in prose_of_python(src) for _, p in mentioned_paths(text))
    assert found == ["examples/a.py", "examples/c.py", "examples/d.py"]


@pytest.mark.parametrize("text, ok", [
    (f"see {_M} 4.3", True),
    ("see MATH" + ".md 4.3", False),
    ("see math" + ".md", False),
    ("the team copy at /work" + "/shared", False),
])
def test_outside_detector(text, ok):
    assert (not any(rx.search(text) for rx, _ in _OUTSIDE)) == ok
