"""A minimal delayed FHIR server for scenario (b): precomputed answers, every query held ``delay_ms``.

The benchmark is about the service, so the FHIR server must cost next to no CPU
on a 2-core machine: it answers from a table of ``path?query`` -> JSON bytes
(built from the service's own prefetch templates, see ``run.py``), or with an
empty searchset for a query it does not know (counted in ``unknown``). Each
answer is sent ``delay_ms`` after the request arrived; the wait is an asyncio
timer, so concurrent queries are delayed in parallel, as with the test
server's ``--delay-ms`` (``tests/fhir_server``). HTTP/1.1 with keep-alive.

It records, per query, the start and end time (``GET /__log``), so that the
benchmark can say how many queries one hook call made and whether they
overlapped. ``POST /__reset_log`` empties the log.

Run in its own process: ``python fhir_stub.py --port 0 --delay-ms 100 --table t.json``
prints ``LISTENING http://127.0.0.1:PORT/fhir`` when ready.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import unquote

EMPTY = b'{"resourceType":"Bundle","type":"searchset","total":0,"entry":[]}'


class Stub:
    def __init__(self, table: dict[str, bytes], delay_ms: int) -> None:
        self.table = table
        self.delay = delay_ms / 1000
        self.log: list[dict] = []
        self.unknown = 0

    def lookup(self, target: str) -> bytes:
        path = target[len("/fhir/"):] if target.startswith("/fhir/") else target
        for key in (path, unquote(path)):
            if key in self.table:
                return self.table[key]
        self.unknown += 1
        return EMPTY

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.time()
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                close = False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value.strip() or 0)
                    elif name == "connection" and value.strip().lower() == "close":
                        close = True
                if length:
                    await reader.readexactly(length)
                if target.startswith("/__log"):
                    body = json.dumps({"log": self.log, "unknown": self.unknown}).encode()
                elif target.startswith("/__reset_log"):
                    self.log, self.unknown, body = [], 0, b"{}"
                else:
                    entry = {"path": target, "start_ms": arrived * 1000, "end_ms": None}
                    self.log.append(entry)
                    body = self.lookup(target)
                    await asyncio.sleep(max(0.0, arrived + self.delay - time.time()))
                    entry["end_ms"] = time.time() * 1000
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: "
                             + str(len(body)).encode() + (b"\r\nConnection: close" if close else b"") + b"\r\n\r\n" + body)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def serve(port: int, table: dict[str, bytes], delay_ms: int) -> None:
    stub = Stub(table, delay_ms)
    server = await asyncio.start_server(stub.handle, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"LISTENING http://127.0.0.1:{bound}/fhir", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--delay-ms", type=int, default=100)
    p.add_argument("--table", required=True, help="JSON object: 'Type?query' or 'Type/id' -> resource")
    args = p.parse_args(argv)
    raw = json.loads(open(args.table, encoding="utf-8").read())
    table = {k: json.dumps(v, separators=(",", ":")).encode() for k, v in raw.items()}
    try:
        asyncio.run(serve(args.port, table, args.delay_ms))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
