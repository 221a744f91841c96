"""Bundled data files, shipped inside the package (read with ``importlib.resources``).

Provenance, row counts and the script that regenerates them: ``data/README.md`` and
``data/regenerate.py`` in the repository.
"""
