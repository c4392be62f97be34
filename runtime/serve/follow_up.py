"""What follows a parse in the service, in the background (issue 21): the exact parse behind a
preview (POST /v1/persons with progressive=true), and after each parse the first `--predress`
gallery garments dressed ahead, their PNGs kept beside the person in the person store
(`dressed_key`), so that a click on one answers from there.

It is background work (`InferenceGate.run_background`): one step at a time, only while no
request waits for a slot, so a request waits at most for the one step already running; the
first step dresses one garment alone, for the first look, then DRESS_BATCH garments a step,
each as a click would (the same bytes). A failure is logged, never answered.
"""
from __future__ import annotations

import asyncio
import logging

import anyio

from ..errors import TryonError
from ..options import DressOptions, ParseOptions
from ..parsed_person import ParseCall, ParsedPerson
from ..pipeline import DRESS_BATCH

log = logging.getLogger("tryon.serve")
PREDRESS_OPTIONS = DressOptions()  # what the page asks for unless its options are changed


def dressed_key(quality: str, garment_id: str, options: DressOptions) -> str:
    """Where a dressed PNG is kept beside its person: the parse's quality, the garment, every dress flag."""
    return f"{quality}|{garment_id}|{options.key()}"


class FollowUp:
    def __init__(self, inference, garments: list):
        self.inference = inference
        self.garments = garments  # the gallery garments to dress ahead, in order
        self.exact: dict[str, asyncio.Event] = {}  # person id -> set once its exact parse is done (or failed)
        self.running: set[str] = set()  # person ids with background work left
        self.deleted: set[str] = set()  # deleted while their work ran: what that work stores goes too
        self._tasks: set[asyncio.Task] = set()

    @property
    def store(self):
        return self.inference.store

    def start(self, call: ParseCall, photo: bytes, options: ParseOptions) -> None:
        """After a parse has answered: the exact parse when it gave a preview, then the gallery."""
        parsed = call.parsed
        if not self.inference.background or parsed.id in self.running:
            return
        if parsed.quality == "preview":
            self.exact[parsed.id] = asyncio.Event()
        elif not self.garments:
            return
        self.running.add(parsed.id)
        self.deleted.discard(parsed.id)
        task = asyncio.get_running_loop().create_task(self._follow(parsed, photo, options))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_exact(self, person_id: str) -> None:
        """Until the exact parse behind this person's preview is done, if one is under way here."""
        if person_id in self.exact:
            await self.exact[person_id].wait()

    def pending(self, person_id: str) -> bool:
        return person_id in self.running

    def forget(self, person_id: str) -> None:
        """The person was deleted: nothing its background work still makes may bring it back."""
        if person_id in self.running:
            self.deleted.add(person_id)

    async def _follow(self, parsed: ParsedPerson, photo: bytes, options: ParseOptions) -> None:
        pid = parsed.id
        try:
            await self._predress(parsed)
            if parsed.quality == "preview" and pid not in self.deleted:
                parsed = (await self.inference.parse_background(photo, options)).parsed
                if pid in self.deleted:  # the exact parse stored the person again
                    await anyio.to_thread.run_sync(self.store.delete, pid)
                    return
                self._exact_done(pid)
                await self._predress(parsed)
        except Exception:  # background work has no client to answer: it is logged
            log.exception("background work after a parse failed")  # no person id: logs never name persons
        finally:
            self._exact_done(pid)
            self.running.discard(pid)
            self.deleted.discard(pid)

    def _exact_done(self, person_id: str) -> None:
        event = self.exact.pop(person_id, None)
        if event is not None:
            event.set()

    async def _predress(self, parsed: ParsedPerson) -> None:
        """The garments not dressed yet for this person at this quality: one alone, then DRESS_BATCH at a time."""
        if parsed.refused:
            return
        keys = {g.id: dressed_key(parsed.quality, g.id, PREDRESS_OPTIONS) for g in self.garments}
        todo = [g for g in self.garments
                if await anyio.to_thread.run_sync(self.store.get_dressed, parsed.id, keys[g.id]) is None]
        chunks = [todo[:1]] + [todo[start:start + DRESS_BATCH] for start in range(1, len(todo), DRESS_BATCH)]
        for chunk in filter(None, chunks):
            if parsed.id in self.deleted:
                return
            outcomes = await self.inference.dress_background(parsed, [g.rgb for g in chunk], PREDRESS_OPTIONS)
            for garment, outcome in zip(chunk, outcomes):
                if isinstance(outcome, TryonError):
                    log.warning("pre-dressing %s failed: %s", garment.id, outcome)
                else:
                    await anyio.to_thread.run_sync(self.store.put_dressed, parsed.id, keys[garment.id], outcome[1])
