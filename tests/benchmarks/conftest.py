from __future__ import annotations

import pytest

from tocsr.core.provenance import environment


@pytest.fixture
def provenance(benchmark):
    """pytest-benchmark records machine and commit; we add the suite's own environment block."""
    benchmark.extra_info["environment"] = environment()
    return benchmark.extra_info
