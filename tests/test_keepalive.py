"""The keepalive wheel: legs called when due, on one reactor call per tick."""

import pytest

from twisted.internet.task import Clock

from chatrelay.keepalive import KeepaliveWheel


class Leg:
    """Records when the wheel calls it; `then` runs inside the call."""

    def __init__(self, clock, name, then=None):
        self.clock = clock
        self.name = name
        self.then = then
        self.called = []

    def keepalive_due(self):
        self.called.append(round(self.clock.seconds(), 6))
        if self.then is not None:
            self.then()


def advance_to(clock, when):
    """Advance the clock to `when`, stopping at each call due before, as a reactor would."""
    for _ in range(10_000):
        times = [call.getTime() for call in clock.getDelayedCalls() if call.getTime() <= when]
        if not times:
            clock.advance(max(0.0, when - clock.seconds()))
            return
        clock.advance(max(0.0, min(times) - clock.seconds()))
    raise AssertionError("calls without end")


@pytest.fixture
def clock():
    return Clock()


@pytest.mark.parametrize("start, delay", [(0.0, 10.0), (0.03, 10.0), (3.3, 0.2), (7.19, 30.0), (1.0, 0.001)])
def test_a_leg_is_called_at_its_time_never_before_and_within_a_tick(clock, start, delay):
    """Due times are rounded up to the wheel's tick (a fifth of a second)."""
    wheel = KeepaliveWheel(clock, 30, 30)
    advance_to(clock, start)
    leg = Leg(clock, "a")
    wheel.call_after(leg, delay)
    advance_to(clock, start + delay - 0.001)
    assert leg.called == []
    advance_to(clock, start + delay + 0.2)
    assert len(leg.called) == 1
    assert start + delay <= leg.called[0] <= start + delay + 0.2
    assert not wheel.due(leg) and len(wheel) == 0


def test_legs_due_in_the_same_tick_share_one_reactor_call(clock):
    """However many legs are due at once, the reactor holds one call per tick."""
    wheel = KeepaliveWheel(clock, 30, 30)
    legs = [Leg(clock, n) for n in range(1000)]
    for leg in legs:
        wheel.call_after(leg, 30.0)
    late = Leg(clock, "late")
    wheel.call_after(late, 30.3)
    assert len(clock.getDelayedCalls()) == 2
    clock.advance(30.0)
    assert all(leg.called == [30.0] for leg in legs) and late.called == []
    assert len(clock.getDelayedCalls()) == 1 and len(wheel) == 1


def test_making_a_leg_due_again_replaces_its_time(clock):
    """A leg has one due time: the latest one given."""
    wheel = KeepaliveWheel(clock, 30, 30)
    leg = Leg(clock, "a")
    wheel.call_after(leg, 5.0)
    wheel.call_after(leg, 2.0)
    wheel.call_after(leg, 8.0)
    advance_to(clock, 10.0)
    assert leg.called == [8.0]
    assert clock.getDelayedCalls() == []


def test_a_cancelled_leg_is_not_called_and_an_empty_tick_leaves_the_reactor(clock):
    """Cancelling the last leg of a tick cancels its reactor call; cancelling twice is harmless."""
    wheel = KeepaliveWheel(clock, 30, 30)
    a, b = Leg(clock, "a"), Leg(clock, "b")
    wheel.call_after(a, 5.0)
    wheel.call_after(b, 5.0)
    wheel.cancel(a)
    assert len(clock.getDelayedCalls()) == 1
    wheel.cancel(b)
    wheel.cancel(b)
    assert clock.getDelayedCalls() == [] and len(wheel) == 0
    clock.advance(10.0)
    assert a.called == [] and b.called == []


def test_a_call_may_cancel_legs_of_its_own_tick_not_yet_called(clock):
    """Whichever leg of a tick is called first cancels the others: they are not called."""
    wheel = KeepaliveWheel(clock, 30, 30)
    legs = [Leg(clock, n) for n in range(3)]
    for leg in legs:
        leg.then = lambda leg=leg: [wheel.cancel(other) for other in legs if other is not leg]
        wheel.call_after(leg, 1.0)
    clock.advance(1.0)
    assert sorted(len(leg.called) for leg in legs) == [0, 0, 1]
    assert clock.getDelayedCalls() == [] and len(wheel) == 0


def test_a_call_may_make_legs_of_its_own_tick_due_later(clock):
    """A leg called first that makes the others due a second later: they are called then, not
    now; and a leg may make itself due again from its own call."""
    wheel = KeepaliveWheel(clock, 30, 30)
    legs = [Leg(clock, n) for n in range(3)]
    for leg in legs:
        def then(leg=leg):
            if len(leg.called) == 1:
                for other in legs:
                    if not other.called:
                        wheel.call_after(other, 1.0)
        leg.then = then
        wheel.call_after(leg, 1.0)
    again = Leg(clock, "again")
    again.then = lambda: wheel.call_after(again, 2.0) if len(again.called) == 1 else None
    wheel.call_after(again, 1.0)
    advance_to(clock, 5.0)
    assert sorted(leg.called for leg in legs) == [[1.0], [2.0], [3.0]]
    assert again.called == [1.0, 3.0]
    assert clock.getDelayedCalls() == [] and len(wheel) == 0


def test_one_legs_failure_does_not_stop_the_others(clock, log_events):
    """An exception from one leg is logged; the other legs of its tick are still called."""
    wheel = KeepaliveWheel(clock, 30, 30)

    def fail():
        raise RuntimeError("boom")

    legs = [Leg(clock, n, then=fail if n == 0 else None) for n in range(3)]
    for leg in legs:
        wheel.call_after(leg, 1.0)
    clock.advance(1.0)
    assert all(leg.called == [1.0] for leg in legs)
    failures = [event for event in log_events if "log_failure" in event]
    assert len(failures) == 1 and failures[0]["log_failure"].check(RuntimeError)
