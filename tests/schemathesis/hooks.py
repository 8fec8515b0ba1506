"""Schemathesis checks for this API, beyond schemathesis's own (loaded by scripts/schemathesis).

The property every generated request must keep (issue 12): no 5xx, every 4xx is JSON
`{"error": "..."}`, a refused request changes nothing, an accepted one changes exactly one row.
"State" is read from the real SQLite file the server writes (SCHEMATHESIS_DB), before each call
(`before_call`) and after it (the checks): the run is sequential (one worker), so nothing else
writes in between. A third check is an oracle for `POST /clientes/{id}/transacoes`: it decides from
the bytes sent, by docs/CONTRACT.md's rules, whether the body was valid, and holds the answer to it.
"""

import json
import os
import re
import sqlite3
from urllib.parse import urlsplit

import schemathesis

DB = os.environ["SCHEMATHESIS_DB"]
CLIENTS = {1, 2, 3, 4, 5}
MAX_AMOUNT = 2**53 - 1
LEDGER_REFUSALS = ("insufficient limit", "the credit would take the balance above")
TRANSACTION_PATH = re.compile(r"^/clientes/([^/]*)/transacoes$")

_before = {}


def ledger():
    """Every balance and every transaction row: what a refused request must leave alone."""
    with sqlite3.connect(f"file:{DB}?mode=ro", uri=True) as db:
        balances = tuple(db.execute("SELECT id, saldo FROM clientes ORDER BY id"))
        count, last = db.execute("SELECT count(*), max(id) FROM transacoes").fetchone()
    return {"balances": balances, "count": count, "last": last}


@schemathesis.hook
def before_call(context, case, kwargs):
    _before["state"] = ledger()


def request_path(response):
    return urlsplit(response.request.url).path


@schemathesis.check
def errors_are_json_with_an_error_message(ctx, response, case):
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"{response.status_code} with {content_type!r}"
    body = json.loads(response.content)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body


@schemathesis.check
def refused_requests_change_nothing_and_accepted_ones_add_one_row(ctx, response, case):
    before, after = _before.get("state"), ledger()
    if before is None:
        return
    if response.status_code >= 400:
        assert after == before, f"a {response.status_code} changed the ledger: {before} -> {after}"
    elif response.request.method == "POST" and TRANSACTION_PATH.match(request_path(response)):
        assert after["count"] == before["count"] + 1, f"a 200 added {after['count'] - before['count']} rows"
        client = int(TRANSACTION_PATH.match(request_path(response)).group(1))
        saldo = dict(after["balances"])[client]
        assert json.loads(response.content)["saldo"] == saldo, "the answered balance is not the stored one"


def valid_transaction(raw):
    """Whether `raw` is a valid transaction body by docs/CONTRACT.md, decided independently of
    the server: a JSON object (UTF-8) whose `valor` is an integer literal from 1 to 2^53 - 1,
    `tipo` "c" or "d", `descricao` a string of 1 to 10 Unicode scalar values."""
    if raw is None:
        return False
    try:
        body = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    if not isinstance(body, dict):
        return False
    valor, tipo, descricao = body.get("valor"), body.get("tipo"), body.get("descricao")
    return (
        type(valor) is int
        and 1 <= valor <= MAX_AMOUNT
        and tipo in ("c", "d")
        and isinstance(descricao, str)
        and 1 <= len(descricao) <= 10
        # A lone surrogate escape (\ud800) is not a Unicode scalar value; the server refuses it.
        and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in descricao)
        # NUL is refused (SQLite's length() would stop at it).
        and "\x00" not in descricao
    )


@schemathesis.check
def transactions_are_answered_by_the_contract(ctx, response, case):
    match = TRANSACTION_PATH.match(request_path(response))
    if response.request.method != "POST" or not match or not re.fullmatch(r"[0-9]{1,18}", match.group(1)):
        return
    client, status = int(match.group(1)), response.status_code
    if client not in CLIENTS:
        assert status == 404, f"unknown client {client} answered {status}"
    elif valid_transaction(response.request.body):
        message = json.loads(response.content).get("error", "") if status == 422 else ""
        assert status == 200 or (status == 422 and message.startswith(LEDGER_REFUSALS)), (
            f"a valid transaction got {status} {response.content[:200]!r}"
        )
    else:
        assert status in (400, 413, 422), f"an invalid body got {status}"
