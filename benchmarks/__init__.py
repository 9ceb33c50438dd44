"""pyrogen's benchmarks, one module each, run from the repository root as ``python -m benchmarks.NAME``.

:mod:`benchmarks.references` holds the hand-written reference implementations that the benchmarks
and the tests share. Each benchmark's docstring gives its commands; measured figures, with their date
and machine, are in ``benchmarks/results/``.
"""
