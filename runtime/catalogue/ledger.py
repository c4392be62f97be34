"""The catalogue's ledger, `OUT/catalogue.jsonl`: one JSON line per finished pair, appended
and flushed after the image is in place, so a killed run loses nothing it had written and a
rerun skips what is done; and the summary of a run."""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from ..errors import InputError
from .plan import DONE, LEDGER, WRITTEN, Catalogue
from .work import Outcome


class Ledger:
    """The last line of a pair wins. Held with an exclusive lock while a run writes, so two
    runs never share an output folder."""

    def __init__(self, out: Path):
        self.path = out / LEDGER
        self._file = None

    def read(self) -> dict[tuple[str, str], dict]:
        """The last line of each pair; a torn last line (a killed run) is skipped."""
        lines: dict[tuple[str, str], dict] = {}
        for text in self.path.read_text(errors="replace").splitlines() if self.path.is_file() else ():
            try:
                line = json.loads(text)
                lines[(line["person"], line["garment"])] = line
            except (ValueError, KeyError, TypeError):
                continue
        return lines

    def done(self, catalogue: Catalogue, identity: dict) -> set[tuple[str, str]]:
        """Pairs a rerun skips: done with these models and settings, their image (if any) in place."""
        lines = self.read()
        return {pair.key for pair in catalogue.pairs
                if _current(line := lines.get(pair.key), identity) and line.get("status") in DONE
                and (line["status"] not in WRITTEN or pair.output(catalogue.out).is_file())}

    def __enter__(self):
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab+")
        except OSError as exc:
            raise InputError(f"cannot write the ledger {self.path} ({exc.strerror or exc}): choose an -o folder "
                             "this user can write, where catalogue.jsonl is not a folder") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise InputError(f"another tryon catalogue is writing {self.path.parent} (its ledger is locked): "
                             "wait for it, or choose another -o folder") from None
        if self._file.seek(0, os.SEEK_END):  # a killed run may have left half a line: start on a fresh one
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":
                self._file.write(b"\n")
        return self

    def __exit__(self, *exc):
        self._file.close()

    def append(self, line: dict):
        self._file.write((json.dumps(line) + "\n").encode())
        self._file.flush()
        os.fsync(self._file.fileno())


def _current(line: dict | None, identity: dict) -> bool:
    return bool(line) and line.get("models") == identity["models"] and line.get("settings") == identity["settings"]


def record(catalogue: Catalogue, ledger: Ledger, person: str, garment: str, outcome: Outcome, identity: dict,
           engine: str) -> dict:
    """Put one pair's image in place, then its ledger line; returns the line."""
    from ..files import write_atomically

    out = catalogue.out
    target = catalogue.by_key[(person, garment)].output(out)
    if outcome.png is not None:
        write_atomically(target, outcome.png)
    line = {"person": person, "garment": garment, "output": str(target.relative_to(out)),
            "status": outcome.status, "confidence": round(outcome.confidence, 6), "reason": outcome.reason,
            "timings_ms": outcome.timings_ms, **identity, "engine": engine,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    ledger.append(line)
    return line


def summarize(catalogue: Catalogue, ledger: Ledger, identity: dict) -> dict[str, list[dict]]:
    """The ledger's lines by status, and 'pending' for pairs without a line of these settings."""
    lines = ledger.read()
    by_status: dict[str, list[dict]] = {}
    for pair in catalogue.pairs:
        line = lines.get(pair.key)
        if not _current(line, identity):
            line = {"status": "pending", "person": pair.key[0], "garment": pair.key[1]}
        by_status.setdefault(line["status"], []).append(line)
    return by_status
