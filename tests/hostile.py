"""Values an adapter may hand back that misbehave when read: shared by the hostile tests."""

from __future__ import annotations

#: The number an `Impostor` pretends to be (the White House switchboard, conftest's VALID_US).
IMPERSONATED = "+12024561111"


class Boom(BaseException):
    """A BaseException of an adapter's own."""


class Ambiguous:
    """A numpy array used as a flag: its truth value raises."""

    def __bool__(self) -> bool:
        raise ValueError("The truth value of an array with more than one element is ambiguous")


class Incomparable:
    """A state whose comparison raises."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("cannot compare")

    __hash__ = None  # type: ignore[assignment]


class Unprintable:
    """A value whose text raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


class Treacherous(str):
    """Text whose own methods all raise."""

    def strip(self, chars: str | None = None) -> str:
        raise RuntimeError("strip")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")


class Impostor(str):
    """The text of one number that hashes and compares like another (IMPERSONATED)."""

    def __hash__(self) -> int:
        return hash(IMPERSONATED)

    def __eq__(self, other: object) -> bool:
        return True
