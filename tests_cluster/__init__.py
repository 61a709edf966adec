"""`make test-cluster`: the system on hosts made of network namespaces (see conftest.py)."""
