"""Load generator and benchmarks for the hub: `python -m bench --help`."""
