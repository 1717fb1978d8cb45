"""The editable file: the constants a candidate may change."""

X = 0.0  # first coordinate
Y = 0.0  # second coordinate
