"""bench: device profiles and a measurement harness (latency, memory, energy, MACs, params).

Layer above `tocsr`; used by `search` and `reports`. Never imports either of them.
"""
