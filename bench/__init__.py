"""Microbenchmark harness of the margin-softmax / CCS / NNCCS op against its peers and the GEMM floor.

Run it as ``python -m bench ...`` (``python -m bench --help``; ``--list`` names the implementations
and shapes). It measures median time and peak extra memory per (implementation, shape, dtype, mode),
writes one JSON record for each under ``bench/results/`` with a markdown table and a PNG plot, and
records every peer that cannot run (not installed, out of memory, error) instead of dropping it.
The harness uses the public API of ``crfiqa_kernels`` only.
"""
