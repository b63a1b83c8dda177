"""Benchmarks (`tootlake bench <area>`): never imported by the run-time path. Each module has
`build_parser(parser)` and `run(args) -> int`."""
