"""A gRPC server (grpcio) for the HTTP/2-to-main tests, without generated code: methods of the
service demo.Echo take and return raw bytes. usage: grpc_main.py PORT (h2c on 127.0.0.1:PORT)

  Unary     "echo:" + the request; trailing metadata x-main: grpc; the request's
            x-forwarded-for echoed as initial metadata x-saw-forwarded-for
  Count     server streaming: the request is a number n; n messages "0".."n-1"
  Chat      bidirectional: each message answered "re:" + message as it arrives
  Slow      answers after 2 s (for deadlines)
  Missing   fails with NOT_FOUND "no such thing"
"""
import sys
import time
from concurrent import futures

import grpc


def unary(request, context):
    md = dict(context.invocation_metadata())
    context.send_initial_metadata((("x-saw-forwarded-for", md.get("x-forwarded-for", "-")),))
    context.set_trailing_metadata((("x-main", "grpc"),))
    return b"echo:" + request


def count(request, context):
    for i in range(int(request.decode())):
        yield str(i).encode()


def chat(requests, context):
    for r in requests:
        yield b"re:" + r


def slow(request, context):
    time.sleep(2)
    return b"late"


def missing(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


handlers = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "Count": grpc.unary_stream_rpc_method_handler(count),
    "Chat": grpc.stream_stream_rpc_method_handler(chat),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
    "Missing": grpc.unary_unary_rpc_method_handler(missing),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.Echo", handlers),))
server.add_insecure_port("127.0.0.1:%s" % sys.argv[1])
server.start()
print("ready", flush=True)
server.wait_for_termination()
