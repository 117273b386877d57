"""labtui's benchmarks: `sudo ./bench/run` (bench/runner.py) runs every case side by side with the
peers; the bench_*.py modules are its cases, each still runnable on its own (docs/benchmarks.md)."""
