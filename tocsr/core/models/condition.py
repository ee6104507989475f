"""The conditioning the teacher UNet receives: a learned embedding per class, class 0 = null.

No text encoder is available offline, so conditioning is `cond_tokens` learned tokens per class.
The default data has one class (unconditional generation through the null token); a labelled
folder can use more. Saved and loaded as a diffusers folder like the other models.
"""

from __future__ import annotations

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn


class ConditionEmbedding(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, num_classes: int = 1, cond_tokens: int = 1, cross_attention_dim: int = 32):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(num_classes, cond_tokens, cross_attention_dim) * 0.02)

    def forward(self, class_ids: torch.Tensor) -> torch.Tensor:
        """(B,) long -> (B, cond_tokens, cross_attention_dim)."""
        return self.tokens[class_ids]

    def null(self, batch: int) -> torch.Tensor:
        return self.tokens[torch.zeros(batch, dtype=torch.long, device=self.tokens.device)]
