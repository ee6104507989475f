"""reports: evaluation against SR baselines, quality-vs-cost curves, nightly history and HTML reports."""
