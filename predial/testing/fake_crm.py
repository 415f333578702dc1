"""Deprecated, goes in predial 0.3: import its names from predial.testing."""

from .._moved import moved

moved(__name__, "predial.testing._fake_crm", "import its names from predial.testing")
