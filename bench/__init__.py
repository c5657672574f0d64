"""prunetui's benchmarks: ``python -m bench`` (``make bench``) prints one table of ratios, each
measured side by side against a plain-PyTorch baseline that lives here, and writes
bench/results.json. See bench/NOTES.md for what each figure means and the optimization log."""
