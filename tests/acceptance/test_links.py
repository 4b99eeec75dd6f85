"""Every relative link and image in README.md and figures/README.md leads somewhere: the file or folder exists
in the repository (and is not git-ignored), and a `file#anchor` (or `#anchor`) names a heading of that file,
slugged as GitHub slugs headings. The checker is tested on a document with broken links of each kind, so it
can fail."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "figures/README.md")

FENCE = re.compile(r"^ {0,3}(```|~~~)[^\n]*\n.*?^ {0,3}\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`]+`")
LINK = re.compile(  # [text](target) and ![alt](target), text with one level of brackets, an optional "title"
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]+(?:\([^()\s]*\))?)>?(?:\s+\"[^\"]*\")?\s*\)"
)
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
HTML = re.compile(r"""<(?:img|a|source)\b[^>]*?\b(?:src|href|srcset)\s*=\s*["']([^"']+)["']""", re.I)
HTML_ANCHOR = re.compile(r"""<a\b[^>]*?\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.I)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.M)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)  # https:, mailto:, ... and protocol-relative
LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")  # GitHub's line anchors in a file view
PATH_PREFIXES = ("bench/", "checkpoints/", "figures/", "misdir/", "notebooks/", "scripts/", "tests/")


def prose(text: str) -> str:
    """The text a reader sees as prose: fenced blocks and inline code removed (links there are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its rendered text lower-cased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a Markdown file offers: its headings' slugs (repeats get -1, -2, ...) and HTML ids."""
    seen: Counter[str] = Counter()
    found = set()
    for _, heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return found | set(HTML_ANCHOR.findall(text))


def targets(text: str) -> list[str]:
    """Every link, image, reference definition and HTML src/href of a Markdown text, in order."""
    text = prose(text)
    return LINK.findall(text) + REFERENCE.findall(text) + HTML.findall(text)


def ignored(paths: list[Path], root: Path) -> set[Path]:
    if not (root / ".git").exists() or not paths:
        return set()
    relative = [str(p.relative_to(root)) for p in paths]
    out = subprocess.run(
        ["git", "check-ignore", "--stdin"], cwd=root, input="\n".join(relative), capture_output=True, text=True
    ).stdout
    return {root / line for line in out.splitlines() if line}


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of `doc` that leads nowhere, with why."""
    text = doc.read_text(encoding="utf-8")
    problems, found = [], []
    for target in targets(text):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = unquote(target).partition("#")
        file = doc if not path else (root / path.lstrip("/") if path.startswith("/") else doc.parent / path)
        resolved = file.resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file or folder")
        elif anchor:
            if resolved.suffix.lower() in (".md", ".markdown"):
                if anchor not in anchors(resolved.read_text(encoding="utf-8")):
                    where = resolved.relative_to(root)
                    problems.append(f"{target}: no heading with anchor #{anchor} in {where}")
            elif not LINE_ANCHOR.match(anchor):
                problems.append(f"{target}: #{anchor} is no anchor of a {resolved.suffix or 'folder'}")
        if resolved.exists() and resolved.is_relative_to(root.resolve()):
            found.append((target, resolved))
    hidden = ignored([r for _, r in found], root.resolve())
    problems += [f"{t}: git-ignored, so not in the repository others see" for t, r in found if r in hidden]
    return problems


def named_paths(doc: Path, root: Path = ROOT) -> list[str]:
    """Repository paths the text names in inline code (`figures/...`, `scripts/...`) that do not exist."""
    missing = []
    for span in CODE_SPAN.findall(FENCE.sub("", doc.read_text(encoding="utf-8"))):
        name = span.strip("`")
        if name.startswith(PATH_PREFIXES) and not re.search(r"[\s*<>{}$|]|\.\.\.", name):
            if not (root / name).exists():
                missing.append(name)
    return missing


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_and_image_leads_somewhere(doc):
    path = ROOT / doc
    assert targets(path.read_text(encoding="utf-8")), f"{doc} has no links: the parser is broken"
    assert broken_links(path) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_repository_path_named_in_code_exists(doc):
    assert named_paths(ROOT / doc) == []


def test_slugs_are_githubs():
    assert slug("What misdir finds on its own organisms") == "what-misdir-finds-on-its-own-organisms"
    assert slug("`make demo`") == "make-demo"
    assert slug("Ablation does not remove it; steering is not specific") == (
        "ablation-does-not-remove-it-steering-is-not-specific"
    )
    assert slug("Transfer is partial and the control's B works the other way") == (
        "transfer-is-partial-and-the-controls-b-works-the-other-way"
    )
    assert slug("Ground truth: rank-1 organisms, where the direction is known") == (
        "ground-truth-rank-1-organisms-where-the-direction-is-known"
    )
    assert slug("SAE persona latents (sae-lens)") == "sae-persona-latents-sae-lens"
    assert slug("On a GPU, with the **public** [organisms](x.md)") == "on-a-gpu-with-the-public-organisms"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n### A b\n") == {"a", "a-1", "a-b"}


def test_the_checker_catches_each_kind_of_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A section\n", encoding="utf-8")
    (tmp_path / "docs" / "figure.png").write_bytes(b"\x89PNG")
    doc = tmp_path / "docs" / "README.md"
    doc.write_text(
        "# Title\n\n## Here\n\n"
        "Good: [other](other.md), [section](other.md#a-section), [here](#here), ![fig](figure.png),\n"
        "[up](../docs/),"
        '[web](https://example.com/missing), `[in code](missing.md)`, <img src="figure.png">.\n\n'
        "```markdown\n[in a fence](missing-too.md)\n```\n\n"
        "Bad: [gone](gone.md), [no such section](other.md#no-such-section), [no such heading](#nowhere),\n"
        '![lost figure](lost.png), <img src="lost.svg">, [outside](../../outside.md),\n'
        "[anchor](figure.png#x).\n\n"
        "[ref]: missing-reference.md\n",
        encoding="utf-8",
    )
    problems = broken_links(doc, root=tmp_path)
    assert sorted(p.split(":")[0] for p in problems) == sorted(
        [
            "gone.md",
            "other.md#no-such-section",
            "#nowhere",
            "lost.png",
            "lost.svg",
            "../../outside.md",
            "figure.png#x",
            "missing-reference.md",
        ]
    ), problems
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "real.py").write_text("", encoding="utf-8")
    doc.write_text("Run `scripts/real.py`, then `scripts/missing.py` on `figures/<model>.jsonl`.\n", encoding="utf-8")
    assert named_paths(doc, root=tmp_path) == ["scripts/missing.py"]
