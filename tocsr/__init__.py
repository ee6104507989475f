"""TOC-SR suite: task-optimal compact diffusion for image super-resolution.

Two layers live in this package, at the two ends of the stack (tests/test_layering.py):
`tocsr.core` at the bottom (models, teacher, surrogates, distillation, SR models, artifacts, errors),
then `bench`, `search` and `reports`, then `tocsr.app` on top (the CLI, the stages, the main job),
the only place that wires the layers together.
"""

__version__ = "0.1.0"
