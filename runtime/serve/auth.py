"""API keys (issue 22): who may call the service. Clients send `Authorization: Bearer KEY`;
each key has a name, which the logs and the routes see in its place."""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

ENV = "TRYON_API_KEYS"
FORMAT = "one key a line, `name:key` or `key` (named key-1, key-2, ...); blank lines and # comments skipped"


@dataclass(frozen=True)
class ApiKeys:
    keys: tuple[tuple[str, bytes], ...] = ()  # (name, key)

    @classmethod
    def gather(cls, given=(), file: Path | None = None, env: str | None = None) -> "ApiKeys":
        """--api-key (each `key` or `name:key`), --api-keys-file (FORMAT) and TRYON_API_KEYS
        (entries separated by commas or spaces), in that order."""
        entries = [(f"--api-key #{number}", entry) for number, entry in enumerate(given, 1)]
        if file is not None:
            try:
                lines = Path(file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"--api-keys-file {file}: cannot be read ({exc}); expected {FORMAT}") from None
            entries += [(f"{file} line {number}", line.strip()) for number, line in enumerate(lines, 1)
                        if line.strip() and not line.lstrip().startswith("#")]
        entries += [(f"{ENV} entry {number}", entry) for number, entry in
                    enumerate((env or "").replace(",", " ").split(), 1)]
        keys = []
        for where, entry in entries:
            name, _, key = entry.rpartition(":")
            name = name.strip() or f"key-{len(keys) + 1}"
            if not key or not all("!" <= c <= "~" for c in name + key):  # the entry is not echoed: it holds a key
                raise InputError(f"{where}: names and keys are printable ASCII without spaces; expected {FORMAT}")
            if name in dict(keys) or any(hmac.compare_digest(key.encode(), other) for _, other in keys):
                raise InputError(f"{where}: a key or key name given twice; each key needs its own name")
            keys.append((name, key.encode()))
        return cls(tuple(keys))

    def __bool__(self) -> bool:
        return bool(self.keys)

    def owner(self, name: str) -> str:
        """What persons parsed under this key are owned by (ParseOptions.owner): a digest of the
        key, so ids under two keys differ and the stores never hold a key."""
        key = dict(self.keys)[name]
        return hmac.new(key, b"tryon-onnx person owner", "sha256").hexdigest()[:32]

    def name_of(self, authorization: bytes | None) -> str | None:
        """The name of the key an `Authorization: Bearer KEY` header carries, or None. Every key
        is compared, in constant time, whether or not one matched already."""
        scheme, _, given = (authorization or b"").partition(b" ")
        found = None
        for name, key in self.keys:
            if hmac.compare_digest(given.strip(), key) and scheme.lower() == b"bearer":
                found = name
        return found
