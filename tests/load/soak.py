#!/usr/bin/env python3
"""Soak test: run_load.py's mix at a moderate, paced rate for 30 minutes, sampling worker RSS.

Same server set-up as run_load.py (2 gunicorn workers on 127.0.0.1, a free
port, its own temporary SQLite database and data dir). Defaults: 1800 s,
4 client connections, 20 requests/s in total, VmRSS of the master and each
worker (from /proc/<pid>/status) every 30 s. Every run_load.py option can be
overridden, e.g. `soak.py --seconds 600 --rate 40`.

Reports per worker: RSS at the start of the measured phase, at the end, the
maximum, and the growth; plus the error count (must be 0) and whether any
worker was replaced. Exit status 1 on errors, a dead server or a replaced worker.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_load import main  # noqa: E402

SOAK_DEFAULTS = {"seconds": 1800, "concurrency": 4, "rate": 20.0, "rss_interval": 30.0, "warmup": 10}

if __name__ == "__main__":
    sys.exit(main(defaults=SOAK_DEFAULTS, title="soak"))
