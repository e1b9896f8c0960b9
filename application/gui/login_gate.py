"""The GUI's login check, with throttling: a password cannot be guessed at the speed of the network.

:class:`LoginGate` is the callable Gradio asks for every login (``auth=gate``). Passwords are compared in
constant time. After :attr:`LoginGate.free_failures` wrong passwords in a row for one user name, that name is
locked for ``lockout_s`` seconds, doubling with every further lock up to ``max_lockout_s``; while it is locked
even the right password is refused, so guessing gains nothing. Failures over all names are limited too
(``global_failures`` per ``window_s``), so spreading guesses over many names does not help either. A
successful login clears its name's count. Nothing sleeps: the check answers at once, so a flood of guesses
cannot hold up the server.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

logger = logging.getLogger("dhr.login")


@dataclass
class _Record:
    failures: int = 0
    locks: int = 0
    locked_until: float = 0.0


class LoginGate:
    """Check logins against ``logins`` (user, password) pairs, throttling wrong guesses (see the module)."""

    def __init__(
        self,
        logins: Sequence[tuple[str, str]],
        *,
        free_failures: int = 5,
        lockout_s: float = 30.0,
        max_lockout_s: float = 900.0,
        global_failures: int = 30,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._passwords = {user: password for user, password in logins}
        self.free_failures = int(free_failures)
        self.lockout_s = float(lockout_s)
        self.max_lockout_s = float(max_lockout_s)
        self.global_failures = int(global_failures)
        self.window_s = float(window_s)
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()
        self.checked = 0
        """How many logins were actually compared (the rest were refused unseen, for throttling)."""

    def __call__(self, username: str, password: str) -> bool:
        """Whether this login may in: right password and neither the name nor the server is locked."""
        now = self._clock()
        with self._lock:
            while self._recent and now - self._recent[0] > self.window_s:
                self._recent.popleft()
            record = self._records.setdefault(str(username), _Record())
            if now < record.locked_until or len(self._recent) >= self.global_failures:
                return False
            self.checked += 1
            expected = self._passwords.get(str(username))
            given = str(password).encode("utf-8", errors="surrogateescape")
            ok = expected is not None and hmac.compare_digest(given, expected.encode("utf-8"))
            if ok:
                self._records.pop(str(username), None)
                return True
            self._recent.append(now)
            record.failures += 1
            if record.failures >= self.free_failures:
                record.locked_until = now + min(self.max_lockout_s, self.lockout_s * 2**record.locks)
                record.locks += 1
                record.failures = 0
                logger.warning(
                    "login %r locked for %.0f s after %d wrong passwords",
                    username,
                    record.locked_until - now,
                    self.free_failures,
                )
            if len(self._recent) >= self.global_failures:
                logger.warning(
                    "%d wrong logins within %.0f s: logins paused", len(self._recent), self.window_s
                )
            return False


__all__ = ["LoginGate"]
