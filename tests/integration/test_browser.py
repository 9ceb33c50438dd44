"""The report and the documentation as a reader sees them, in headless Chromium.

Each page is opened from disk in Debian's ``chromium`` (driven by Playwright,
which here launches that browser and downloads none): it must request nothing
from another host, show every picture (each ``<img>`` decoded,
``naturalWidth > 0``) and leave no raw TeX (``\\(``) in its rendered text, and the
front page's code blocks must fit without a horizontal scroll bar.

Skipped where Playwright or Chromium is missing (``bash scripts/install.sh
--browser`` installs Chromium; on CI, where CI is set, it always does, and this
test fails instead of skipping).
"""

import os
import runpy
import shutil
import sys
from pathlib import Path

import pytest

import pyrogen
from tests.conftest import requires_fashion_mnist

MAIN = Path(pyrogen.__file__).parent / "__main__.py"  # what python -m pyrogen runs

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
# Where CI runs, a missing browser is a missing install step: fail instead of skipping.
if not os.environ.get("CI"):
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install -e '.[test]'")
    if CHROMIUM is None:
        pytest.skip(
            "Chromium is not installed: apt-get install chromium, or bash scripts/install.sh --browser",
            allow_module_level=True,
        )

from playwright.sync_api import sync_playwright  # noqa: E402

# Flags that keep Chromium from reaching out on its own (updates, sync, field trials).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The page's state once its scripts have run: MathJax's typesetting, if the page has MathJax, awaited.
STATE = """async () => {
    if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
    await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
    return {
        text: document.body.innerText,
        maths: document.querySelectorAll("mjx-container").length,
        images: [...document.images].map(img => [img.getAttribute("src").slice(0, 60), img.naturalWidth]),
        overflowing: [...document.querySelectorAll("pre")].filter(pre => pre.scrollWidth > pre.clientWidth)
                                                         .map(pre => pre.innerText.slice(0, 60)),
    };
}"""


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:  # only where CI is set
        pytest.fail("no chromium on CI: scripts/install.sh installs it when CI is set")
    # Playwright starts each launch with a fresh profile of its own (no --user-data-dir).
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


def _open(browser, path):
    """Load ``path`` at a desktop size; returns the page's state and the non-local URLs it requested."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto(path.as_uri(), wait_until="load")
    assert response is None or response.ok
    state = page.evaluate(STATE)
    page.close()
    remote = [url for url in requested if not url.startswith(("file:", "data:", "blob:", "about:"))]
    return state, remote


def _check(state, remote, maths):
    assert not remote, f"requested from other hosts: {remote}"
    assert "\\(" not in state["text"] and "\\[" not in state["text"], "raw TeX left in the page"
    assert state["images"], "no picture on the page"
    broken = [src for src, width in state["images"] if width == 0]
    assert not broken, f"pictures that did not decode: {broken}"
    if maths:
        assert state["maths"] > 0, "MathJax typeset nothing"


def test_front_page_renders_maths_and_fits_its_code(browser, docs_html):
    state, remote = _open(browser, docs_html / "index.html")
    assert not remote, remote
    assert "\\(" not in state["text"], "raw TeX left in the page"
    assert state["maths"] >= 2  # p(z) p(x|z) and q(z|x)
    assert "p(z)\\, p_\\theta" not in state["text"]
    assert not state["overflowing"], f"code blocks that scroll sideways: {state['overflowing']}"


def test_gallery_page_renders_its_figures_and_maths(browser, docs_html):
    state, remote = _open(browser, docs_html / "_generated" / "gallery" / "vae.html")
    _check(state, remote, maths=True)
    assert len(state["images"]) >= 2  # reconstructions and samples


def _pyrogen(*args):
    """``python -m pyrogen ARGS`` in this process."""
    argv = sys.argv
    sys.argv = ["pyrogen", *map(str, args)]
    try:
        with pytest.raises(SystemExit) as exit:
            runpy.run_path(str(MAIN), run_name="__main__")
    finally:
        sys.argv = argv
    assert exit.value.code in (0, None), f"pyrogen {' '.join(map(str, args))} exited {exit.value.code}"


@requires_fashion_mnist
def test_report_renders_offline(browser, tmp_path, one_thread):
    run = tmp_path / "run"
    _pyrogen(
        "train",
        "vae",
        "--out",
        run,
        "--train-size",
        "200",
        "--test-size",
        "50",
        "--epochs",
        "1",
        "--latent-dim",
        "2",
        "--hidden",
        "16",
        "--eval-samples",
        "0",
        "--no-progress",
    )
    _pyrogen("plot", run, "--num-points", "50")
    _pyrogen("report", run)
    state, remote = _open(browser, run / "report.html")
    _check(state, remote, maths=False)
    assert len(state["images"]) >= 1 + 6  # the training curves and the model's pictures
