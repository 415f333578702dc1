"""Deprecated, goes in predial 0.3: use predial.redact and predial.mask_phone."""

from ._moved import moved

moved(__name__, "predial._redaction", "use predial.redact and predial.mask_phone")
