"""The README is short and current: at most 200 lines, CI's command, headline figures that the documentation
pages they link to state, and, like the documentation's prose, no timestamps, load averages or issue numbers
(a measurement's date and machine belong in its results file under benchmarks/results/)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PROSE = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst")), *sorted((ROOT / "docs").glob("tutorials/*"))]
DATED = {
    "a date": r"\b20\d\d-\d\d-\d\d\b",
    "a clock time": r"\b\d\d:\d\d(:\d\d)? ?UTC\b|\bUTC\b",
    "a load average": r"\bload averages?\b",
    "an issue number": r"(?<!pyro-ppl/pyro )\b[Ii]ssues? #?\d+|\(#\d+",
}
FIGURE = re.compile(r"−?\d+\.\d+x?|\d+(?:\.\d+)?%|\d/\d/\d")


def test_readme_is_at_most_200_lines():
    assert len(README.splitlines()) <= 200


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    command = "bash scripts/install.sh && .venv/bin/pytest -q"
    assert command in ci.splitlines() and f"```bash\n{command}\n```" in README


def test_no_timestamps_load_averages_or_issue_numbers_in_readme_and_docs():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}"
        for path in PROSE
        if path.suffix in (".md", ".rst", ".py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for what, pattern in DATED.items()
        if re.search(pattern, line)
    ]
    assert not found, "\n".join(found)


def test_every_headline_figure_is_stated_on_the_page_it_links_to():
    table = README.split("## Headline results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("|") and "](" in line]
    assert len(rows) >= 5
    for row in rows:
        figures = FIGURE.findall(row.split("|")[2])
        page = ROOT / re.search(r"\]\(([^)]+)\)", row).group(1)
        assert figures and page.exists(), row
        text = page.read_text()
        assert [f for f in figures if f not in text] == [], f"{page.name} does not state {figures}"


def test_files_the_readme_names_exist():
    named = set(re.findall(r"\]\(((?!https?:)[^)]+)\)", README))
    named |= {m for m in re.findall(r"`([\w./-]+\.(?:rst|md|txt|toml|sh))`", README)}
    named |= {"LICENSE", "CHANGELOG.md", "constraints.txt"}
    assert [n for n in sorted(named) if not (ROOT / n).exists()] == []
