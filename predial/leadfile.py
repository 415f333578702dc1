"""Deprecated, goes in predial 0.3: import LeadRow and read_leads from predial."""

from ._moved import moved

moved(__name__, "predial._leadfile", "import LeadRow and read_leads from predial")
