"""The fitted-model core that every model builds on: configuration rules, the fitted state and its
thresholds, batched prediction, one checkpoint format, and the registry of model kinds."""
