"""Deprecated, goes in predial 0.3: import RedisServer from predial.testing."""

from .._moved import moved

moved(__name__, "predial.testing._redis_server", "import RedisServer from predial.testing")
