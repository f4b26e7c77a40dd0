"""Calls demo.Echo (grpc_main.py) through TARGET (host:port, h2c) with grpcio and prints one JSON
object with what came back. usage: grpc_client.py TARGET"""
import json
import queue
import sys

import grpc

out = {}
with grpc.insecure_channel(sys.argv[1]) as ch:
    unary = ch.unary_unary("/demo.Echo/Unary")
    resp, call = unary.with_call(b"hello", timeout=10)
    out["unary"] = resp.decode()
    out["initial"] = dict(call.initial_metadata())
    out["trailing"] = dict(call.trailing_metadata())
    out["count"] = [m.decode() for m in ch.unary_stream("/demo.Echo/Count")(b"5", timeout=10)]
    # Bidirectional, in turns: each message is sent only after the answer to the one before has
    # come back, so nothing on the way may wait for the end of either stream.
    chat = ch.stream_stream("/demo.Echo/Chat")
    turns = queue.Queue()
    turns.put(b"a")

    def outgoing():
        while True:
            m = turns.get()
            if m is None:
                return
            yield m

    out["chat"] = []
    for m in chat(outgoing(), timeout=10):
        out["chat"].append(m.decode())
        turns.put({1: b"b", 2: b"c"}.get(len(out["chat"])))
    try:
        ch.unary_unary("/demo.Echo/Slow")(b"", timeout=0.5)
        out["slow"] = "answered"
    except grpc.RpcError as e:
        out["slow"] = e.code().name
    try:
        ch.unary_unary("/demo.Echo/Missing")(b"", timeout=10)
        out["missing"] = "answered"
    except grpc.RpcError as e:
        out["missing"] = [e.code().name, e.details()]
print(json.dumps(out))
