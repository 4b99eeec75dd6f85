"""The failure suite's tally: what it tried, counted across the session and printed at the end.

Tests take the `tally` fixture and count what they do (`tally.bad_input()`, `tally.fault()`,
`tally.resume()`, `tally.records(expected, found)`); the summary line reads, e.g.
`failure suite: 41 bad inputs tried, 12 faults injected, 6 resumes checked, records lost: 0`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class Tally:
    bad_inputs: int = 0
    faults: int = 0
    resumes: int = 0
    records_lost: int = 0

    def bad_input(self) -> None:
        self.bad_inputs += 1

    def fault(self, n: int = 1) -> None:
        self.faults += n

    def resume(self) -> None:
        """One run resumed after it was killed."""
        self.resumes += 1

    def records(self, expected: int, found: int) -> None:
        """A resumed run's output checked: `expected` records should be there, `found` were."""
        self.records_lost += max(0, expected - found)

    def __str__(self) -> str:
        return (
            f"failure suite: {self.bad_inputs} bad inputs tried, {self.faults} faults injected, "
            f"{self.resumes} resumes checked, records lost: {self.records_lost}"
        )


TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.bad_inputs or TALLY.faults or TALLY.resumes:
        terminalreporter.write_sep("-", str(TALLY))
