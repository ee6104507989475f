"""Surrogate blocks: cheap stand-ins for teacher blocks, one family per registry entry.

Importing this package registers the built-in families (resnet: bottleneck 1/2 and 1/4,
depthwise-separable, skip; attention: half heads, linear attention, conv token mixer, skip).
"""

from tocsr.core.surrogates import attention, resnet  # noqa: F401  (registration)
from tocsr.core.surrogates.registry import (  # noqa: F401
    SurrogateFamily,
    applicable_families,
    build_surrogate,
    get_family,
    list_families,
    register_family,
)
