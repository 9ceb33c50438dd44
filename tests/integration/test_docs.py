"""The documentation builds with warnings as errors, and the code in it runs.

* ``sphinx-build -W -b html docs`` succeeds (offline: nothing is fetched), with
  an API page for every public module and a gallery page for every example;
* the built pages read offline: no page loads a script or stylesheet from
  another host (MathJax is served from the build), and the code blocks of the
  front page fit its width;
* every ``>>>`` example in pyrogen's docstrings passes as a doctest;
* the Python code of each tutorial runs top to bottom, with its ALL-CAPS size
  constants shrunk.
"""

import doctest
import importlib
import pkgutil
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

import pyrogen
from tests.conftest import requires_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

sphinx = pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'")


def _public_modules():
    names = ["pyrogen"]
    for info in pkgutil.walk_packages(pyrogen.__path__, "pyrogen."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


MODULES = _public_modules()


@pytest.fixture
def html(docs_html):
    """The built documentation (built once per session: tests/conftest.py)."""
    return docs_html


def test_docs_build_without_warnings(html):
    assert (html / "index.html").exists()
    for page in ("tutorials/vae_from_first_principles", "api/index", "_generated/gallery/index", "testing"):
        assert (html / f"{page}.html").exists(), page


def test_every_public_module_has_an_api_page(html):
    for module in MODULES:
        assert (html / "_generated" / "api" / f"{module}.html").exists(), module
    vae_page = (html / "_generated" / "api" / "pyrogen.models.vae.html").read_text()
    assert 'id="pyrogen.models.vae.VAE"' in vae_page and 'id="pyrogen.models.vae.VAE.model"' in vae_page


def test_every_example_has_a_gallery_page(html):
    gallery = html / "_generated" / "gallery"
    index = (gallery / "index.html").read_text()
    for script in sorted((ROOT / "examples").glob("*.py")):
        page = (gallery / f"{script.stem}.html").read_text()
        assert f'href="{script.stem}.html' in index or f'href="#{script.stem}' in index
        # sphinx-gallery's thumbnail is made from the example's committed figure
        assert f"sphx_glr_{script.stem}_thumb.png" in index
        figures = sorted((DOCS / "_static" / "gallery").glob(f"{script.stem}*.png"))
        assert figures, f"no committed figure for {script.name}"
        for figure in figures:
            assert f'src="../../_images/{figure.name}"' in page
        text = re.sub(r"<[^>]+>", "", page)
        assert "parser.add_argument" in text  # the code itself
        assert "sphinx_gallery_thumbnail_path" not in text  # configuration comments are hidden
        # the script itself, and a notebook made from it, to download
        (download,) = re.findall(rf'href="(\.\./\.\./_downloads/[^"]+/{script.stem}\.py)"', page)
        assert (gallery / download).read_bytes() == script.read_bytes()
        (notebook,) = re.findall(rf'href="(\.\./\.\./_downloads/[^"]+/{script.stem}\.ipynb)"', page)
        assert '"cell_type": "code"' in (gallery / notebook).read_text()


class _Resources(HTMLParser):
    """The URLs of the scripts and stylesheets a page loads (``src`` of ``<script>``, ``href`` of ``<link>``)."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def _resources(page):
    parser = _Resources()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.urls


def test_pages_load_nothing_from_other_hosts(html):
    pages = sorted(html.rglob("*.html"))
    assert len(pages) > 20
    remote = {
        f"{page.relative_to(html)}: {url}"
        for page in pages
        for url in _resources(page)
        if re.match(r"^(https?:)?//", url, re.IGNORECASE)
    }
    assert not remote, "pages load from other hosts:\n" + "\n".join(sorted(remote))


def test_maths_is_rendered_by_a_local_mathjax(html):
    page = html / "index.html"
    assert r"\(p(z)\, p_\theta(x \mid z)\)" in page.read_text()  # maths left for MathJax
    (mathjax,) = [url for url in _resources(page) if "mathjax" in url.lower()]
    assert (page.parent / mathjax).is_file(), mathjax
    # the fonts MathJax's HTML output loads, relative to its script
    assert list((page.parent / mathjax).parent.glob("output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff"))


def test_front_page_code_fits_without_scrolling():
    """At most 80 characters a line in the code blocks of the front page (they show about 90)."""
    long = [
        line for line in re.findall(r"^   (\S.*)$", (DOCS / "index.rst").read_text(), re.MULTILINE) if len(line) > 80
    ]
    assert not long, long


def test_no_network_at_build_time():
    conf = (DOCS / "conf.py").read_text()
    assert "sphinx.ext.intersphinx" not in conf


def _doctests():
    """Every docstring with ``>>>`` examples in pyrogen (each object found in its own module)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = []
    for name in MODULES:
        tests += [t for t in finder.find(importlib.import_module(name), name) if t.examples]
    return sorted(tests, key=lambda t: t.name)


DOCTESTS = _doctests()


def test_docstrings_have_examples():
    assert any(t.name.startswith("pyrogen.models.vae.VAE") for t in DOCTESTS)
    assert any(t.name == "pyrogen.testing" for t in DOCTESTS)


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_examples(test):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    output = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = runner.run(test, out=output.append, clear_globs=True)
    finally:
        torch.set_num_threads(threads)
    assert result.failed == 0, "".join(output)


# Size constants of each tutorial's code, shrunk so that the code runs in seconds.
TUTORIAL_SIZES = {
    "vae_from_first_principles": {"NUM_TRAIN": 300, "EPOCHS": 1, "HIDDEN": 32, "NUM_TEST": 50, "NUM_SAMPLES": 10},
    "ae_vae_gan": {"NUM_TRAIN": 200, "NUM_TEST": 50, "EPOCHS": 1, "HIDDEN": 16, "NUM_SAMPLES": 10},
    "extending": {"SCRIPT": str(ROOT / "examples" / "semi_supervised.py")},
    "posterior_collapse": {"NUM_TRAIN": 100, "NUM_TEST": 50, "EPOCHS": 1, "MAX_INNER_STEPS": 2},
    "own_data": {"NUM_IMAGES": 200, "EPOCHS": 1},
}


def _python_blocks(rst):
    """The code of every ``.. code-block:: python`` directive, dedented."""
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n((?:\n|   .*\n)+)", rst, re.MULTILINE):
        lines = match.group(1).splitlines()
        blocks.append("\n".join(line[3:] for line in lines))
    return blocks


@requires_fashion_mnist
@pytest.mark.parametrize("name", sorted(TUTORIAL_SIZES))
def test_tutorial_code_runs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # torch is loaded here: an example's set_wait_policy keeps it
    code = "\n".join(_python_blocks((DOCS / "tutorials" / f"{name}.rst").read_text()))
    for constant, value in TUTORIAL_SIZES[name].items():
        code, count = re.subn(rf"^{constant} = .*$", f"{constant} = {value!r}", code, flags=re.MULTILINE)
        assert count == 1, f"{constant} is not assigned exactly once in the tutorial's code"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, f"docs/tutorials/{name}.rst", "exec"), {"__name__": "__tutorial__"})
    finally:
        torch.set_num_threads(threads)
