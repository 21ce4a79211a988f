"""Views rebuilt from the log on demand, through the same pure folds the live tables use."""
