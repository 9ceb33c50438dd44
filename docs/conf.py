"""Sphinx configuration for pyrogen's documentation.

Builds offline and the pages read offline: no intersphinx downloads, and
every script and stylesheet a page loads is served from the build itself
(MathJax from the ``sphinx-mathjax-offline`` package, the theme's own files).
References to Pyro, PyTorch and ArviZ names that Sphinx cannot resolve become
plain links to those projects' documentation search pages (see
``_external_link``). Two sets of pages are generated at each build into
``_generated/`` (not committed):

* ``_generated/api/<module>.rst``: one page per public pyrogen module with
  ``automodule``; a module already documented with ``automodule`` on a guide
  page gets a pointer to that page instead (Sphinx refuses a second description);
* ``_generated/gallery/``: sphinx-gallery's page for each ``examples/*.py`` (its
  docstring as text, its code, the script and a notebook to download) and the
  gallery's index, from ``examples/GALLERY_HEADER.rst``. The build does not run
  the examples (``plot_gallery`` off): at a size that fits a docs build their
  figures are an untrained model's blur, and at their defaults they take minutes
  each. The figures on the pages are committed PNGs from full runs, and
  ``tests/integration/test_examples.py`` runs every example at a tiny size.
"""

import importlib
import pkgutil
import re
import sys
from pathlib import Path
from urllib.parse import quote

from docutils import nodes

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import pyrogen  # noqa: E402

project = "pyrogen"
author = "the pyrogen developers"
copyright = "2026, the pyrogen developers"
release = version = pyrogen.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    # MathJax 3 copied into _static/mathjax: sets mathjax_path to the local tex-chtml.js.
    "sphinx-mathjax-offline",
]
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autodoc_typehints = "none"
autoclass_content = "class"
# Overrides of torch methods without a docstring of their own would inherit torch's
# Google-style docstrings, which are not reStructuredText.
autodoc_inherit_docstrings = False
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
templates_path = []
# Pyro's theme. Its sidebar holds the table of contents, the current section open two
# levels deep (on the API reference: every module). Deeper or always-open navigation
# renders the whole tree into each of the ~100 pages and doubled the build's time.
html_theme = "sphinx_rtd_theme"
html_static_path = ["_static"]
html_title = f"pyrogen {release}"
html_theme_options = {"navigation_depth": 2}
pygments_style = "sphinx"
mathjax3_config = {"tex": {"macros": {"KL": r"\mathrm{KL}"}}}

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "_generated/gallery",
    "filename_pattern": r"\.py$",
    "plot_gallery": False,  # see the module docstring
    "remove_config_comments": True,
    "write_computation_times": False,
    "download_all_examples": False,
    "show_signature": False,
}

GENERATED = DOCS / "_generated"
AUTODOC_DIRECTIVE = re.compile(r"^\s*\.\.\s+automodule::\s+(\S+)", re.MULTILINE)

# Unresolved references to these packages become links to their documentation's search page.
EXTERNAL_SEARCH = {
    "pyro": "https://docs.pyro.ai/en/stable/search.html?q={}",
    "torch": "https://docs.pytorch.org/docs/stable/search.html?q={}",
    "torchvision": "https://docs.pytorch.org/vision/stable/search.html?q={}",
    "arviz": "https://python.arviz.org/en/stable/search.html?q={}",
    "numpy": "https://numpy.org/doc/stable/search.html?q={}",
    "matplotlib": "https://matplotlib.org/stable/search.html?q={}",
}


def _public_modules():
    """Every pyrogen module whose name has no component starting with an underscore."""
    names = ["pyrogen"]
    for info in pkgutil.walk_packages(pyrogen.__path__, "pyrogen."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _documented_elsewhere():
    """``{module: page}`` for modules that a hand-written page documents with ``automodule``."""
    found = {}
    for path in sorted(DOCS.rglob("*.rst")):
        rel = path.relative_to(DOCS)
        if rel.parts[0] in ("_build", "_generated"):
            continue
        for module in AUTODOC_DIRECTIVE.findall(path.read_text(encoding="utf-8")):
            found.setdefault(module, rel.with_suffix("").as_posix())
    return found


def _remove_stale(folder, keep):
    """Delete the generated pages in ``folder`` whose names are not in ``keep``."""
    for page in folder.glob("*.rst"):
        if page.name not in keep:
            page.unlink()


def _write_if_changed(path, text):
    """Write only on change, so that Sphinx does not rebuild unchanged pages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _title(text):
    return f"{text}\n{'=' * len(text)}\n"


def _api_pages():
    documented = _documented_elsewhere()
    modules = _public_modules()
    keep = set()
    for module in modules:
        imported = importlib.import_module(module)
        is_package = hasattr(imported, "__path__")
        lines = [_title(f"``{module}``"), ""]
        if module in documented:
            lines += [
                f"``{module}`` is documented with its guide, :doc:`/{documented[module]}`:",
                f"see :mod:`{module}`.",
            ]
        elif is_package:
            lines += [f".. automodule:: {module}", ""]
            exported = getattr(imported, "__all__", [])
            if exported:
                lines += ["Public names (documented in the module that defines each):", ""]
                for name in exported:
                    obj = getattr(imported, name)
                    home = getattr(obj, "__module__", None)
                    role = "class" if isinstance(obj, type) else "func" if callable(obj) else "data"
                    target = f"{home}.{name}" if home and home.startswith("pyrogen") else f"{module}.{name}"
                    lines.append(f"* :{role}:`{name} <{target}>`")
        else:
            lines += [f".. automodule:: {module}", "   :members:", ""]
        name = f"{module}.rst"
        _write_if_changed(GENERATED / "api" / name, "\n".join(lines) + "\n")
        keep.add(name)
    _remove_stale(GENERATED / "api", keep)


def _generate(app):
    _api_pages()


def _reexported(app, env, node, contnode):
    """Resolve ``pyrogen.pkg.Name`` to where ``Name`` is documented (``pyrogen.pkg.module.Name``)."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("pyrogen."):
        return None
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None
    home = getattr(obj, "__module__", None)
    if not home or home == module_name:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], f"{home}.{attr}", node, contnode)


def _external_link(app, env, node, contnode):
    """Link an unresolved reference to Pyro, PyTorch, ArviZ, ... to that project's doc search."""
    target = node.get("reftarget", "")
    url = EXTERNAL_SEARCH.get(target.split(".")[0])
    if node.get("refdomain") != "py" or url is None:
        return None
    ref = nodes.reference(
        "", "", internal=False, refuri=url.format(quote(target)), reftitle=f"{target} (external documentation)"
    )
    ref.append(contnode)
    return ref


def setup(app):
    app.connect("builder-inited", _generate)
    app.connect("missing-reference", _reexported)
    app.connect("missing-reference", _external_link)
    return {"parallel_read_safe": True}
