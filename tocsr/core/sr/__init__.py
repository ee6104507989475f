"""Super-resolution on the compact backbone: one-step generator, degradations, inference."""
