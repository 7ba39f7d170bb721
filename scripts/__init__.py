"""Developer tools: the demo, image builds, cluster tools, and the harness tests and benchmarks share."""
