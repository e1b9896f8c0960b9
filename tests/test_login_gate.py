"""GUI logins are throttled: wrong passwords lock the name for a while, and a flood of guesses checks nothing."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from application.gui.login_gate import LoginGate
from tests.browser import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_300_guesses_in_a_second_check_only_five() -> None:
    clock = Clock()
    gate = LoginGate([("ann", "s3cret")], clock=clock)
    results = []
    for i in range(300):  # 300 wrong passwords in 0.8 s
        clock.now = 1000.0 + 0.8 * i / 300
        results.append(gate("ann", f"guess{i}"))
    assert not any(results) and gate.checked == 5
    assert gate("ann", "s3cret") is False  # locked: even the right password is refused
    clock.now += 31
    assert gate("ann", "s3cret") is True  # the lock ended; a success clears the count
    assert gate.checked == 6


def test_locks_double_and_other_names_are_unaffected() -> None:
    clock = Clock()
    gate = LoginGate([("ann", "a"), ("bob", "b")], clock=clock, lockout_s=30, max_lockout_s=100)
    for expected_lock in (30, 60, 100, 100):
        for _ in range(5):
            assert gate("ann", "wrong") is False
        clock.now += expected_lock - 1
        assert gate("ann", "a") is False
        assert gate("bob", "b") is True
        clock.now += 1.5
    assert gate("ann", "a") is True


def test_guesses_spread_over_names_pause_all_logins() -> None:
    clock = Clock()
    gate = LoginGate([("ann", "a")], clock=clock, global_failures=30, window_s=60)
    for i in range(100):
        gate(f"user{i}", "x")
    assert gate.checked == 30 and gate("ann", "a") is False
    clock.now += 61
    assert gate("ann", "a") is True


def test_the_served_gui_throttles_logins(tmp_path, monkeypatch) -> None:
    from annotate.store import ProjectStore
    from application.commands.gui import AUTH_ENV, build_gui_parser
    from application.gui import app

    monkeypatch.setenv(AUTH_ENV, "ann:s3cret")  # a login kept out of the process list
    store = ProjectStore.create(tmp_path / "proj", ["cat"])
    port = free_port()
    args = build_gui_parser().parse_args(["--project", str(store.root), "--port", str(port)])
    kwargs = app.launch_kwargs(args, store)
    assert isinstance(kwargs["auth"], LoginGate)
    demo = app.build_app(store, None, user="tester")
    demo.launch(prevent_thread_lock=True, quiet=True, **kwargs)

    def login(password: str) -> int:
        data = urllib.parse.urlencode({"username": "ann", "password": password}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/login", data=data)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    try:
        assert [login(f"wrong{i}") for i in range(20)] == [400] * 20
        assert login("s3cret") == 400  # locked after 5 wrong ones
        assert kwargs["auth"].checked == 5
    finally:
        demo.close()
        store.close()
