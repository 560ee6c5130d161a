"""A Flower app training on scikit-learn's digits with privagg's secure aggregation and DP."""
