"""TOC-SR suite: task-optimal compact diffusion for image super-resolution.

The `tocsr` package is the bottom layer: core types (search space, architecture specs), models,
schemas and provenance. `bench`, `search` and `reports` build on it; `tocsr.cli` wires them.
"""

__version__ = "0.1.0"
