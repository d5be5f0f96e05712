"""Training models on the analysts' labels: the training set, LightGBM, the report, comparisons."""
