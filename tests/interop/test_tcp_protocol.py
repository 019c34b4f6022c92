"""TCP-DuckDB's line protocol (`--tcp-addr`) from a plain Python socket: one
request line, one answer line (`success`, `Error: …` or a JSON array)."""

from __future__ import annotations

import json
import socket

import pytest

from helpers import PASSWORD


class LineClient:
    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.file = self.sock.makefile("rb")

    def send(self, request: str) -> str:
        self.sock.sendall(request.encode() + b"\n")
        line = self.file.readline()
        assert line.endswith(b"\n"), f"connection closed after {request!r}: {line!r}"
        return line.decode().rstrip("\r\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture(scope="module")
def tcp_server(start_module_server):
    return start_module_server("pond-tcp", extra_args=["--tcp-addr", "127.0.0.1:0"])


@pytest.fixture
def client(tcp_server):
    c = LineClient(*tcp_server.tcp_host_port)
    yield c
    c.close()


def test_login_create_connect_insert_select(client, uname):
    assert client.send("select 1").startswith("Error: ")
    assert client.send(f"login admin {PASSWORD}") == "success"
    db = uname("tcpdb")
    assert client.send(f"create database {db}") == "success"
    assert client.send(f"connect {db}") == "success"
    assert client.send("create table fruit (id INTEGER, name VARCHAR, price DOUBLE)") == "success"
    assert client.send("insert into fruit values (1, 'apple', 0.5), (2, 'pear', NULL)") == "success"
    rows = json.loads(client.send("select * from fruit order by id"))
    assert rows == [{"id": 1, "name": "apple", "price": 0.5}, {"id": 2, "name": "pear", "price": None}]


def test_bad_sql_answers_one_error_line(client):
    assert client.send(f"login admin {PASSWORD}") == "success"
    answer = client.send("selec 1 frm nowhere")
    assert answer.startswith("Error: ") and "\n" not in answer
    # The connection is still usable, and the next answer is the next request's.
    assert json.loads(client.send("select 2 as two")) == [{"two": 2}]
