"""Benchmarks and counts: latency and memory side by side, FLOPs, ExecuTorch profiles."""
