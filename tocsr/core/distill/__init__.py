"""Feature-wise generative distillation of surrogate blocks, and the fidelity measures built on them."""
