"""What tests, benchmarks and the demo share to run the system: processes, charts, pods."""
