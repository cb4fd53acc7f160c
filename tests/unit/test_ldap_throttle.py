"""The login throttle: failures per user and per address, window, cool-down, admin release."""

from __future__ import annotations

import pytest

from carme_core.throttle import ADDRESS, USER, LoginThrottle


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make(max_failures=3, max_address_failures=10, window=60, cooldown=30):
    clock = Clock()
    return LoginThrottle(max_failures, max_address_failures, window, cooldown, clock=clock), clock


def test_n_failures_lock_the_user_from_that_address_for_the_cooldown_then_release():
    throttle, clock = make()
    assert throttle.record_failure("alice", "10.0.0.1") == []
    assert throttle.record_failure("alice", "10.0.0.1") == []
    (lock,) = throttle.record_failure("alice", "10.0.0.1")
    assert (lock.kind, lock.key, lock.failures, lock.address) == (USER, "alice", 3, "10.0.0.1")
    clock.now += 29
    assert throttle.lockout("alice", "10.0.0.1").key == "alice"
    assert throttle.lockout("bob", "10.0.0.1") is None  # others are not affected
    clock.now += 1
    assert throttle.lockout("alice", "10.0.0.1") is None


def test_an_attacker_cannot_lock_the_victim_out_from_her_own_address():
    """Issue 16, finding 2: wrong passwords for admin from the attacker's address lock the attacker."""
    throttle, _ = make(max_failures=5, max_address_failures=20)
    for _ in range(50):
        throttle.record_failure("admin", "203.0.113.66")
    assert throttle.lockout("admin", "203.0.113.66") is not None
    assert throttle.lockout("admin", "10.0.0.1") is None  # the admin, from her desk
    assert throttle.lockout("carol", "203.0.113.66").kind == ADDRESS  # the attacker's address is locked


def test_the_state_survives_a_restart_through_the_store():
    class Store:
        state = None

        def load(self):
            return self.state

        def save(self, state):
            self.state = state

    store, clock = Store(), Clock()
    first = LoginThrottle(3, 10, 60, 30, clock=clock, store=store)
    for _ in range(3):
        first.record_failure("alice", "10.0.0.1")
    first.record_failure("bob", "10.0.0.1")
    again = LoginThrottle(3, 10, 60, 30, clock=clock, store=store)  # the hub restarted
    assert again.lockout("alice", "10.0.0.1").failures == 3
    assert again.snapshot()["failing"] == first.snapshot()["failing"]
    clock.now += 31
    assert LoginThrottle(3, 10, 60, 30, clock=clock, store=store).lockout("alice", "10.0.0.1") is None


def test_failures_outside_the_window_do_not_count():
    throttle, clock = make()
    throttle.record_failure("alice", None)
    throttle.record_failure("alice", None)
    clock.now += 61
    assert throttle.record_failure("alice", None) == []
    assert throttle.lockout("alice", None) is None


def test_attempts_during_a_cooldown_neither_count_nor_extend_it():
    throttle, clock = make()
    for _ in range(3):
        throttle.record_failure("alice", None)
    until = throttle.lockout("alice", None).until
    clock.now += 10
    assert throttle.record_failure("alice", None) == []
    assert throttle.lockout("alice", None).until == until


def test_a_success_clears_the_users_failures_not_the_addresss():
    throttle, _ = make(max_address_failures=4)
    throttle.record_failure("alice", "10.0.0.1")
    throttle.record_failure("alice", "10.0.0.1")
    throttle.record_success("alice", "10.0.0.1")
    assert throttle.record_failure("alice", "10.0.0.1") == []  # user count starts again at 1
    (lock,) = throttle.record_failure("bob", "10.0.0.1")  # address: 4th failure
    assert (lock.kind, lock.key) == (ADDRESS, "10.0.0.1")
    assert throttle.lockout("carol", "10.0.0.1").kind == ADDRESS


def test_invalid_names_count_for_the_address_only():
    throttle, _ = make(max_address_failures=2)
    throttle.record_failure(None, "10.0.0.9")
    (lock,) = throttle.record_failure(None, "10.0.0.9")
    assert lock.kind == ADDRESS


def test_the_longer_lock_is_reported():
    throttle, clock = make(max_failures=1, max_address_failures=2, cooldown=30)
    throttle.record_failure("alice", "10.0.0.1")
    clock.now += 5
    throttle.record_failure("bob", "10.0.0.1")  # address locks 5 s later than alice
    assert throttle.lockout("alice", "10.0.0.1").kind == ADDRESS


def test_zero_turns_a_dimension_off():
    throttle, _ = make(max_failures=0, max_address_failures=0)
    for _ in range(50):
        assert throttle.record_failure("alice", "10.0.0.1") == []


def test_admin_release_and_snapshot():
    throttle, clock = make()
    for _ in range(3):
        throttle.record_failure("alice", "10.0.0.1")
    throttle.record_failure("bob", "10.0.0.1")
    snap = throttle.snapshot()
    assert snap["limits"] == {
        "max_failures_per_user_and_address": 3,
        "max_failures_per_address": 10,
        "window_seconds": 60,
        "cooldown_seconds": 30,
    }
    (locked,) = snap["locked"]
    assert (locked["kind"], locked["key"], locked["failures"], locked["remaining_seconds"]) == (
        "user",
        "alice",
        3,
        30,
    )
    assert locked["locked_until"].endswith("Z")
    assert {"kind": "user", "key": "bob", "address": "10.0.0.1", "recent_failures": 1} in snap["failing"]
    assert {"kind": "address", "key": "10.0.0.1", "address": "10.0.0.1", "recent_failures": 4} in snap["failing"]
    assert throttle.release(USER, "alice") is True
    assert throttle.release(USER, "alice") is False
    assert throttle.lockout("alice", None) is None


def test_memory_is_bounded():
    throttle = LoginThrottle(5, 0, 60, 30, clock=Clock(), max_tracked=100)
    for i in range(1000):
        throttle.record_failure(f"user{i}", None)
    assert len(throttle.snapshot()["failing"]) == 100


@pytest.mark.parametrize("args", [(-1, 1, 60, 30), (1, -1, 60, 30), (1, 1, 0, 30), (1, 1, 60, -1)])
def test_bad_limits_are_refused(args):
    with pytest.raises(ValueError):
        LoginThrottle(*args)
