"""A TCP proxy the tests can cut: a database "outage" without touching the real server."""
from __future__ import annotations

import gevent
from gevent import socket
from gevent.server import StreamServer


class CuttableProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.up = True
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._server = StreamServer(("127.0.0.1", 0), self._handle)

    def start(self) -> CuttableProxy:
        self._server.start()
        return self

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def _handle(self, client: socket.socket, _addr: object) -> None:
        if not self.up:
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self._pairs.append((client, upstream))
        a = gevent.spawn(self._pump, client, upstream)
        b = gevent.spawn(self._pump, upstream, client)
        gevent.joinall([a, b])

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def cut(self) -> None:
        """Close every proxied connection and refuse new ones."""
        self.up = False
        pairs, self._pairs = self._pairs, []
        for c, u in pairs:
            for s in (c, u):
                try:
                    s.close()
                except OSError:
                    pass

    def restore(self) -> None:
        self.up = True

    def stop(self) -> None:
        self.cut()
        self._server.stop()
