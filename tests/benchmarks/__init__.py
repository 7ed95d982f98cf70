"""On-demand benchmark suite (issue #7): `python -m tests.benchmarks.run [--quick]`.

Nothing here is collected by pytest (no `test_*.py` files; see conftest.py).
"""
