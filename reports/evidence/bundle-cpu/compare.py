"""The ONNX bundle's table (onnxruntime) beside the in-process torch table of the same teacher and profile.

    python reports/evidence/bundle-cpu/compare.py BUNDLE_TABLE.json TORCH_TABLE.json > compare.txt

Different runtimes fuse and schedule differently, so the two are not expected to agree: this reports how far
apart they are, per block and on the bundle's held-out candidates, and whether they order candidates alike.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from scipy.stats import spearmanr

from bench.costtable import CostTable


def main(onnx_path: str, torch_path: str) -> dict:
    onnx, tor = CostTable.load(onnx_path), CostTable.load(torch_path)
    keys = sorted(set(onnx.entries) & set(tor.entries))
    a = np.array([onnx.entries[k].ratio for k in keys])
    b = np.array([tor.entries[k].ratio for k in keys])
    held = onnx.holdout()
    measured = np.array([c.latency.ratio for c in held])
    by_onnx = np.array([onnx.correction.predict(onnx.entries, c.choices) for c in held])
    by_torch = np.array([tor.correction.predict(tor.entries, c.choices) for c in held])
    out = {
        "onnx_table": {"device": onnx.device_name, "runtime": onnx.execution_mode,
                       "reference_ms": onnx.reference_ms, "validation": onnx.validation_summary()},
        "torch_table": {"device": tor.device_name, "mode": tor.execution_mode, "reference_ms": tor.reference_ms,
                        "validation": tor.validation_summary()},
        "blocks": {"n": len(keys), "median_abs_ratio_diff": float(np.median(np.abs(a / b - 1))),
                   "spearman": float(spearmanr(a, b)[0])},
        "bundle_holdout": {"n": len(held),
                           "onnx_table_median_abs_err": float(np.median(np.abs(by_onnx / measured - 1))),
                           "torch_table_median_abs_err": float(np.median(np.abs(by_torch / measured - 1))),
                           "torch_table_spearman": float(spearmanr(by_torch, measured)[0])},
    }
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2]), indent=2))
