"""Peer implementations the benchmarks compare gradscope against (same work, same problems)."""
