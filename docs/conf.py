"""Sphinx configuration of the course's website: ``python docs/build.py`` builds it (see that file).

Sphinx + MyST-NB + the book theme: the pages are Markdown, the notebooks of ``notebooks/`` are copied
in at every build and executed in quick mode (cached by their code, so an unchanged notebook is not
run again), the API reference comes from the docstrings, and the tables of results are read from
``results/*.json`` while the site is built (``_ext/simplenet_site.py``).
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))
# The site shows the quick course (small demo set, quick configuration): minutes on two cores.
os.environ.setdefault("SIMPLENET_EDU_QUICK", "1")
# The kernels inherit this process's environment: a MPLBACKEND set for scripts (agg) would keep the
# notebooks' figures out of their outputs; without it each kernel draws inline.
os.environ.pop("MPLBACKEND", None)

# `python -m simplenet_edu` runs the command line when its module is imported, and the API has
# nothing to show from it: the recursive API listing imports an empty stand-in instead.
sys.modules.setdefault("simplenet_edu.__main__", types.ModuleType("simplenet_edu.__main__"))

project = "simplenet-edu"
author = "simplenet-edu"
copyright = "simplenet-edu contributors"
release = version = __import__("simplenet_edu").__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "simplenet_site",
]

root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "README.md"]
# "ref.python": a docstring's relative reference (:mod:`.loss`) that two packages could resolve;
# Sphinx links the first and says so for every page, which buries the warnings that matter.
suppress_warnings = ["mystnb.unknown_mime_type", "ref.python"]

# ------------------------------------------------------------------------------------------ MyST
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# ------------------------------------------------------------------------------------------ notebooks
# "cache": run each notebook whose code changed since the last build, reuse the others' outputs.
# build.py --no-execute sets "off"; --cached-only runs none but shows the outputs already cached.
nb_execution_mode = "cache"
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 600
nb_execution_in_temp = True          # a notebook never writes into the site's sources
nb_execution_raise_on_error = True   # a failing notebook fails the build, as it fails the tests
nb_execution_show_tb = True
nb_merge_streams = True
# No script from a CDN: the site works offline. Widgets become stills (_ext/simplenet_site.py).
nb_ipywidgets_js = {}

# ------------------------------------------------------------------------------------------ API
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# ------------------------------------------------------------------------------------------ HTML
html_theme = "sphinx_book_theme"
html_title = "simplenet-edu"
html_static_path = ["_static"]
html_favicon = "_static/favicon.png"
html_css_files = ["site.css"]
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "navigation_with_keys": False,
    # Each page's sidebar expands only the way to itself: with ~60 API pages, the whole tree on every
    # page was most of the build's time.
    "collapse_navbar": True,
}
# Light by default: the notebooks' figures have white backgrounds (and an unset mode is a console error).
html_context = {"default_mode": "light"}
html_last_updated_fmt = None
html_copy_source = True
