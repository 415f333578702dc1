"""Deprecated, goes in predial 0.3: import its names from predial."""

from ._moved import moved

moved(__name__, "predial._models", "import its names from predial")
