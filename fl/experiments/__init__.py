"""The paper's experiments: the sweep, the benchmark, the report and its figures."""
