"""Data: the embedded digits sets, the checks of a config's data sets, and its splits."""
