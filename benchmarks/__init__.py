"""The benchmark scripts of simplenet-edu: each answers one question about speed, memory or quality.

Run them from the repository root as modules, ``python -m benchmarks.<name> [options]``; what they
share is in :mod:`benchmarks.common`, and ``benchmarks/README.md`` lists every script with the question
it answers, the results file it writes and its command.
"""
