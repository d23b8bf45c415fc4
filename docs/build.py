"""Build the course's website: ``python docs/build.py`` (after ``pip install -e ".[docs]"``).

    python docs/build.py                # the whole site, every notebook and solution executed in quick mode
    python docs/build.py --no-execute   # the notebooks without outputs: seconds, for editing the pages
    python docs/build.py --cached-only  # run no notebook; show the outputs the execution cache already has

The site is written to ``docs/_build/html`` (open ``index.html``). Notebooks run with
``SIMPLENET_EDU_QUICK=1``, one after another, and their outputs are cached by their code under
``docs/_build/.jupyter_cache``: a rebuild runs only the notebooks that changed. A notebook that fails
fails the build. The tables of results are read from ``results/*.json`` at every build.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def sphinx_arguments(output: Path, execution: str, cache: Path, results: Path | None = None,
                     quiet: bool = False) -> list[str]:
    """The ``sphinx-build`` arguments of a build into ``output`` (``execution``: cache, cached-only or off)."""
    arguments = ["-b", "html", str(DOCS), str(output), "-d", str(output.parent / "doctrees"),
                 "-D", f"site_execution={execution}", "-D", f"nb_execution_cache_path={cache}"]
    if results is not None:
        arguments += ["-D", f"site_results={results}"]
    return arguments + (["-q"] if quiet else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-execute", action="store_true", help="show the notebooks without outputs")
    mode.add_argument("--cached-only", action="store_true",
                      help="run no notebook; use the outputs already in the execution cache")
    parser.add_argument("--output", type=Path, default=DOCS / "_build" / "html", help="default docs/_build/html")
    parser.add_argument("--cache", type=Path, default=DOCS / "_build" / ".jupyter_cache",
                        help="the notebooks' execution cache (default docs/_build/.jupyter_cache)")
    parser.add_argument("--results", type=Path, help="read the tables from this folder instead of results/")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    args = parser.parse_args(argv)
    try:
        from sphinx.cmd.build import build_main
    except ImportError:
        print('build: sphinx is not installed: pip install -e ".[docs]"', file=sys.stderr)
        return 2
    os.environ["SIMPLENET_EDU_QUICK"] = "1"  # the kernels inherit it: the quick course
    execution = "off" if args.no_execute else "cached-only" if args.cached_only else "cache"
    start = time.perf_counter()
    code = build_main(sphinx_arguments(args.output.resolve(), execution, args.cache.resolve(),
                                       args.results.resolve() if args.results else None, args.quiet))
    took = time.perf_counter() - start
    if code == 0:
        print(f"build: the site is in {args.output / 'index.html'} ({took:.0f} s)")
    else:
        print(f"build: sphinx-build failed with code {code} after {took:.0f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
