"""Small vector fields shared by the solver tests."""

from __future__ import annotations


class Counted:
    """A field wrapper that counts its own calls (independent of the solver's counters)."""

    def __init__(self, field):
        self.field = field
        self.calls = 0

    def __call__(self, t, z):
        self.calls += 1
        return self.field(t, z)


def decay(t, z):
    """dz/dt = −z: z(t) = e^{−t} z0."""
    return -z
