"""A notification daemon that owns org.freedesktop.Notifications on the session bus and never shows anything.

`python silent_notifier.py MODE LOG`: each method call it receives is appended to LOG (one name a line).
MODE `silent` answers nothing at all (a daemon hung as it starts: even introspection waits forever);
`hang` answers introspection and the server's questions but never `Notify` (a daemon hung on each call);
`vanish` exits at the first `Notify` (a daemon that crashes mid-call). It prints `ready` once it owns the name.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dbus_fast import Message, MessageType, NameFlag
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


class HangingNotifications(ServiceInterface):
    def __init__(self, log: Path, vanish: bool) -> None:
        super().__init__(NAME)
        self.log, self.vanish = log, vanish

    @method()
    def GetCapabilities(self) -> "as":  # noqa: F821, N802
        return ["body"]

    @method()
    def GetServerInformation(self) -> "ssss":  # noqa: F821, N802
        return ["silent", "tests", "1", "1.2"]

    @method()
    async def Notify(  # noqa: N802
        self,
        app: "s",  # noqa: F821
        replaces: "u",  # noqa: F821
        icon: "s",  # noqa: F821
        summary: "s",  # noqa: F821
        body: "s",  # noqa: F821
        actions: "as",  # noqa: F821
        hints: "a{sv}",  # noqa: F821
        timeout: "i",  # noqa: F821
    ) -> "u":  # noqa: F821
        with self.log.open("a") as file:
            file.write(f"Notify {summary}\n")
        if self.vanish:
            os._exit(0)
        await asyncio.Event().wait()  # never answers
        return 0

    @method()
    def CloseNotification(self, number: "u"):  # noqa: F821, N802, ANN201
        """Nothing is shown, nothing to close."""


async def main(mode: str, log: Path) -> None:
    bus = await MessageBus().connect()
    if mode == "silent":

        def swallow(message: Message) -> bool:
            if message.message_type is MessageType.METHOD_CALL and message.destination in (NAME, bus.unique_name):
                with log.open("a") as file:
                    file.write(f"{message.member}\n")
                return True  # handled: no reply, ever
            return False

        bus.add_message_handler(swallow)
    else:
        bus.export(PATH, HangingNotifications(log, vanish=mode == "vanish"))
    await bus.request_name(NAME, NameFlag.REPLACE_EXISTING | NameFlag.DO_NOT_QUEUE)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
