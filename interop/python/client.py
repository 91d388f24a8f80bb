"""Calls the example Echo service with Python grpcio (gRPC C-core) over
mutual TLS, without generated code, and checks every answer.

    /usr/bin/python3 client.py HOST:PORT CA CERT KEY

Checks, one line each: unary Say, server-streaming Expand, client-streaming
Collect, bidi Chat, an error status (Expand of an empty text is
INVALID_ARGUMENT with its message), a deadline, the health service, and that
a channel without a client certificate is refused. Exits 1 if any check
fails.
"""

import sys

import grpc

SVC = "/axon.example.v1.Echo/"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_text(text):
    """SayRequest{text} (and HealthCheckRequest{service}): field 1, a string."""
    raw = text.encode()
    return (b"\x0a" + varint(len(raw)) + raw) if raw else b""


def decode_field1(data):
    """The string in field 1 of SayResponse or the enum in field 1 of
    HealthCheckResponse; unknown fields are skipped."""
    i, value = 0, None
    while i < len(data):
        key, i = read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = read_varint(data, i)
        elif wire == 2:
            n, i = read_varint(data, i)
            v, i = data[i:i + n], i + n
        else:
            raise ValueError("unexpected wire type %d" % wire)
        if field == 1:
            value = v
    return value


def read_varint(data, i):
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def text_of(data):
    v = decode_field1(data)
    return v.decode() if v is not None else ""


failures = 0


def check(name, ok, detail):
    global failures
    print("%s %s: %s" % ("PASS" if ok else "FAIL", name, detail))
    if not ok:
        failures += 1


def main():
    target, ca_file, cert_file, key_file = sys.argv[1:5]
    read = lambda p: open(p, "rb").read()
    ca, cert, key = read(ca_file), read(cert_file), read(key_file)
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    with grpc.secure_channel(target, creds) as ch:
        say = ch.unary_unary(SVC + "Say", request_serializer=encode_text, response_deserializer=text_of)
        got = say("hello, grpcio", timeout=10)
        check("unary Say", got == "hello, grpcio", repr(got))

        expand = ch.unary_stream(SVC + "Expand", request_serializer=encode_text, response_deserializer=text_of)
        words = list(expand("one two three", timeout=10))
        check("server-streaming Expand", words == ["one", "two", "three"], repr(words))

        collect = ch.stream_unary(SVC + "Collect", request_serializer=encode_text, response_deserializer=text_of)
        got = collect(iter(["one", "two", "three"]), timeout=10)
        check("client-streaming Collect", got == "one two three", repr(got))

        chat = ch.stream_stream(SVC + "Chat", request_serializer=encode_text, response_deserializer=text_of)
        got = list(chat(iter(["a", "b", "c"]), timeout=10))
        check("bidi Chat", got == ["a", "b", "c"], repr(got))

        try:
            list(expand("", timeout=10))
            check("error status", False, "Expand of an empty text succeeded")
        except grpc.RpcError as e:
            check("error status", e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details(),
                  "%s %r" % (e.code(), e.details()))

        try:
            list(expand(" ".join(["w"] * 100000), timeout=0.000001))
            check("deadline", False, "a call with a 1 us deadline succeeded")
        except grpc.RpcError as e:
            check("deadline", e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, str(e.code()))

        health = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=encode_text,
                                response_deserializer=lambda b: decode_field1(b))
        got = health("axon.example.v1.Echo", timeout=10)
        check("health Check", got == 1, "status %r (1 is SERVING)" % got)

    # A channel that trusts the CA but presents no certificate.
    anon = grpc.ssl_channel_credentials(root_certificates=ca)
    with grpc.secure_channel(target, anon) as ch:
        say = ch.unary_unary(SVC + "Say", request_serializer=encode_text, response_deserializer=text_of)
        try:
            say("hi", timeout=10)
            check("no client certificate", False, "a channel without a certificate was served")
        except grpc.RpcError as e:
            check("no client certificate", e.code() == grpc.StatusCode.UNAVAILABLE,
                  "refused: %s %s" % (e.code(), (e.details() or "").splitlines()[0][:120]))

    print("python grpcio %s over mutual TLS: %s" % (grpc.__version__, "all checks passed" if not failures else "%d failed" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
