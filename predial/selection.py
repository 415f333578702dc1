"""Deprecated, goes in predial 0.3: import the reason sets from predial."""

from ._moved import moved

moved(__name__, "predial._selection", "import the reason sets from predial")
