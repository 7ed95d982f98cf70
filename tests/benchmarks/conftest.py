"""Keep the benchmark suite out of the normal pytest run (it is run on demand, see README.md)."""

collect_ignore_glob = ["*.py"]
