"""The pytest-benchmark suite.

A package on purpose: its conftest is then imported as ``benchmarks.conftest`` and does not
replace ``tests/conftest.py`` as the module ``conftest`` (which tests import helpers from)
when both directories are collected in one run.
"""
