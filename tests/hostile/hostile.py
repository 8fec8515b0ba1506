"""Fuzzed HTTP through the whole stack: N requests (default 100000) of random methods, paths, ids,
headers and mutated bodies, each on its own connection, CONCURRENCY at a time, against a base
URL (nginx in front of the instances). Prints the tally by status and who answered (API JSON or
not), then audits the ledger: every client's balance must equal the sum of the transactions this
run saw accepted (a 200), so no refused request changed anything and no accepted one was lost.

Exit 1 on any 5xx, any 4xx that is not JSON {"error": ...}, a failed audit, or a network error.
Deterministic for a given HOSTILE_SEED. Standard library only.
"""

import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from urllib.parse import unquote, urlsplit

BASE = urlsplit(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9999")
TOTAL = int(os.environ.get("HOSTILE_REQUESTS", "100000"))
CONCURRENCY = int(os.environ.get("HOSTILE_CONCURRENCY", "32"))
SEED = int(os.environ.get("HOSTILE_SEED", "12"))
CLIENTS = {1: 100000, 2: 80000, 3: 1000000, 4: 10000000, 5: 500000}

METHODS = ["GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO", "get"]
IDS = ["1", "2", "3", "4", "5", "6", "0", "-1", "01", "+1", "1.0", "1e3", "abc", "", "%31", "%00", "%2F",
       "9223372036854775807", "9223372036854775808", "99999999999999999999999", "1%20", "%E2%82%AC", "..",
       "1;2", "1,2", "\u00e9", "x" * 3000]
PATHS = ["/clientes/{id}/transacoes", "/clientes/{id}/extrato", "/clientes/{id}", "/clientes/{id}/transacoes/",
         "/clientes//transacoes", "/reset", "/health", "/stats", "/openapi.json", "/", "/nope", "//clientes/1/extrato",
         "/clientes/{id}/extrato?x=1", "/clientes/{id}/transacoes#f", "/CLIENTES/1/extrato", "/clientes/{id}/../../reset"]
CONTENT_TYPES = [None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "application/json; charset=latin1", "\u00ff/\u00ff", ""]
VALORES = [1, 10000, 0, -1, 1.5, 1.0, "10", None, True, [], {}, 2**53 - 1, 2**53, 2**63, 10**30, 1e308, "1e3"]
TIPOS = ["c", "d", "C", "x", "", None, 1, ["c"], "cd", "\u0441"]
DESCRICOES = ["x", "padaria", "1234567890", "12345678901", "", None, 5, "\u00e1\u00e9\u00ed\u00f3\u00fa\u00e2\u00ea\u00f4\u00e3\u00f5",
              "\ud83d\ude00" * 10, "\x00", "a\nb", ["x"], "\\ud800"]


def body(rng):
    fields = {"valor": rng.choice(VALORES), "tipo": rng.choice(TIPOS), "descricao": rng.choice(DESCRICOES)}
    for name in list(fields):
        if rng.random() < 0.1:
            del fields[name]
    if rng.random() < 0.1:
        fields[rng.choice(["extra", "VALOR", "valor"])] = rng.choice(VALORES)
    text = json.dumps(fields).encode()
    mutation = rng.random()
    if mutation < 0.15:  # flip bytes
        data = bytearray(text)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if mutation < 0.25:  # truncate
        return text[: rng.randrange(len(text))]
    if mutation < 0.30:  # random bytes
        return rng.randbytes(rng.randint(0, 200))
    if mutation < 0.33:  # deep nesting
        depth = rng.choice([100, 129, 10000])
        return b"[" * depth + b"]" * depth
    if mutation < 0.35:  # oversized
        return b'{"valor": 1, "tipo": "c", "descricao": "' + b"x" * rng.choice([16000, 17000, 70000]) + b'"}'
    if mutation < 0.38:
        return rng.choice([b"", b"null", b"[]", b"{}", b'"x"', b"1", b"\xef\xbb\xbf{}", b"{\"valor\":1,"])
    return text


def request(rng):
    method = rng.choice(METHODS)
    client = rng.choice(IDS)
    path = rng.choice(PATHS).replace("{id}", client)
    if method == "POST" and path.split("?")[0].endswith("/reset"):
        # A reset legitimately changes every balance, which the audit could not tell from a
        # refused request that did; its other methods stay in the mix.
        method = "PUT"
    data = body(rng) if method not in ("GET", "HEAD") or rng.random() < 0.05 else b""
    headers = [f"Host: {BASE.hostname}"]
    content_type = rng.choice(CONTENT_TYPES)
    if content_type is not None:
        headers.append(f"Content-Type: {content_type}")
    if rng.random() < 0.05:
        headers.append(rng.choice(["Transfer-Encoding: chunked", "Expect: 100-continue", "X-Junk: \x01\x02",
                                   "Content-Encoding: gzip", "Accept: text/html", "Connection: keep-alive, close"]))
    chunked = any(h.startswith("Transfer-Encoding") for h in headers)
    if chunked:
        payload = (f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n") if data else b"0\r\n\r\n"
    else:
        headers.append(f"Content-Length: {len(data)}")
        payload = data
    head = f"{method} {path} HTTP/1.1\r\n" + "\r\n".join(headers) + "\r\nConnection: close\r\n\r\n"
    return method, path, head.encode("utf-8", "surrogateescape") + payload, data


async def send(raw, head_only):
    reader, writer = await asyncio.open_connection(BASE.hostname, BASE.port or 80)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(-1), 30)
    finally:
        writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 1"):  # an interim answer (100 Continue): the final one follows
        head, _, rest = rest.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return status, headers, rest


def accepted_amount(path, data):
    """(client, signed amount) a 200 on a transaction POST applied, from the body we sent."""
    client = int(unquote(path.split("/")[2]))  # the API decodes "%31" as "1", as RFC 3986 has it
    fields = json.loads(data)
    return client, fields["valor"] if fields["tipo"] == "c" else -fields["valor"]


async def main():
    rng = random.Random(SEED)
    requests = [request(rng) for _ in range(TOTAL)]
    tally, bad, applied = Counter(), [], Counter()
    queue = iter(requests)

    async def worker():
        for method, path, raw, data in queue:
            try:
                status, headers, content = await send(raw, method == "HEAD")
            except Exception as err:  # noqa: BLE001 - every failure is tallied
                tally["network error"] += 1
                bad.append((method, path, repr(err)))
                continue
            is_json = headers.get("content-type", "").startswith("application/json")
            # A 400 with no body is the HTTP parser refusing malformed HTTP (raw non-ASCII in the
            # path, a control byte in a header): no route, no handler, nothing to say in JSON.
            kind = "json" if is_json else "empty" if status == 400 and not content else "other"
            tally[f"{status} {kind}"] += 1
            if status >= 500:
                bad.append((method, path, status, content[:200]))
            elif status >= 400 and method != "HEAD" and kind != "empty":
                try:
                    ok = is_json and isinstance(json.loads(content)["error"], str)
                except Exception:  # noqa: BLE001
                    ok = False
                if not ok:
                    bad.append((method, path, status, content[:200]))
            elif status == 200 and method == "POST":
                # Any 200 on a POST must be an applied transaction; the audit finds out if not.
                # "/clientes/%31/transacoes#f" is one, on client 1: nginx passes the target as
                # sent, and the API's URI parser drops the fragment and decodes the escape.
                try:
                    client, amount = accepted_amount(path.split("#")[0], data)
                except Exception:  # noqa: BLE001 - a 200 that no valid transaction explains
                    bad.append((method, path, status, content[:200]))
                    continue
                applied[client] += amount

    await send(f"POST /reset HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode(), False)
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    took = time.monotonic() - started
    audit = []
    for client in CLIENTS:
        _, _, content = await send(f"GET /clientes/{client}/extrato HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), False)
        total = json.loads(content)["saldo"]["total"]
        if total != applied[client]:
            audit.append(f"client {client}: balance {total}, accepted {applied[client]}")
    print(f"hostile: {TOTAL} requests in {took:.1f} s ({TOTAL / took:.0f}/s), seed {SEED}, {CONCURRENCY} at a time")
    for key, count in sorted(tally.items()):
        print(f"  {key:>16}  {count}")
    fivexx = sum(c for k, c in tally.items() if k[0] == "5")
    print(f"hostile: 5xx {fivexx}; 4xx not JSON {{error}}: {sum(1 for b in bad if len(b) == 4 and b[2] < 500)}; "
          f"accepted transactions audited: {'ok' if not audit else 'FAILED'}")
    for line in bad[:20] + audit:
        print("  ", line)
    return 1 if bad or audit else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
