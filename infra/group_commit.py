"""Commands that arrive together go to the writer together.

While one group is being decided and appended, the commands that arrive wait; the next group
is all of them (up to MAX_GROUP).  Nothing waits on a timer: a lone command goes at once, and
under load groups grow by themselves, so the log's write lock and commit are paid once a group
rather than once a command (infra/application.py, ``execute_together``).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from authbus.infra.application import AuthbusApplication, Decided, Submitted

MAX_GROUP = 64  # commands decided and appended in one transaction, at most


class GroupCommit:
    def __init__(self, app: AuthbusApplication, writer: ThreadPoolExecutor, writers: int = 1) -> None:
        self._app = app
        self._writer = writer
        self._waiting: list[tuple[Submitted, asyncio.Future[Decided]]] = []
        self._writing = 0
        self._writers = writers  # groups under way at once
        self._tasks: set[asyncio.Future[None]] = set()

    async def submit(self, submitted: Submitted) -> Decided:
        """The command's reply once its group is appended; its error if it was refused."""
        future: asyncio.Future[Decided] = asyncio.get_running_loop().create_future()
        self._waiting.append((submitted, future))
        if self._writing < self._writers:
            self._writing += 1
            task = asyncio.ensure_future(self._write())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                try:
                    outcomes = await loop.run_in_executor(
                        self._writer, self._app.execute_together, [submitted for submitted, _ in group]
                    )
                except Exception as error:  # the writer could not run it at all: every command hears
                    outcomes = [error] * len(group)
                except BaseException:
                    for _, future in group:
                        future.cancel()
                    raise
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():  # its caller gave up waiting
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._writing -= 1
