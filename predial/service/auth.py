"""Deprecated, goes in predial 0.3: import Caller from predial.service."""

from .._moved import moved

moved(__name__, "predial.service._auth", "import Caller from predial.service")
