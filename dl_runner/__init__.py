"""Deep-learning side of the runner: data sets, tasks and the supervised trainer."""
