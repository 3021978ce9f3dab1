"""redis-py 5 through the proxy, as an application would use it.

Run by tests/clients.rs: `python redis_py_client.py <port> [password]`. Each section prints
`ok <section>` when its checks pass; any failed check raises, so the script exits non-zero with a
traceback. Sections: connect (redis-py 5 sends CLIENT SETINFO on every connection, and HELLO
with protocol=3), commands, pipeline without and with a transaction, WATCH, pub/sub in RESP2 and
RESP3, and a pool of 20 connections shared by 20 threads.
"""

import sys
import threading
import time

import redis

HOST = "127.0.0.1"
PORT = int(sys.argv[1])
PASSWORD = sys.argv[2] if len(sys.argv) > 2 else None


def client(**kw):
    return redis.Redis(
        host=HOST,
        port=PORT,
        password=PASSWORD,
        decode_responses=True,
        socket_timeout=10,
        **kw,
    )


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def client_info(r):
    """CLIENT INFO as a dict, through redis-py's own parser (which needs every field Redis
    prints: qbuf, argv-mem, tot-mem, ...). Values come back as strings or ints."""
    return {k: str(v) for k, v in r.client_info().items()}


def connect():
    assert redis.__version__.startswith("5."), redis.__version__
    r = client()
    check(r.ping() is True, "PING")
    info = client_info(r)
    check(info.get("lib-name") == "redis-py", f"CLIENT SETINFO lib-name: {info}")
    check(info.get("lib-ver") == redis.__version__, f"CLIENT SETINFO lib-ver: {info}")
    check(info.get("resp") == "2", f"resp 2: {info}")
    r3 = client(protocol=3)
    check(r3.ping() is True, "PING over RESP3")
    info3 = client_info(r3)
    check(info3.get("resp") == "3", f"HELLO 3: {info3}")
    check(info3.get("lib-name") == "redis-py", f"SETINFO after HELLO: {info3}")
    r3.hset("py:hash", mapping={"a": "1", "b": "2"})
    check(r3.hgetall("py:hash") == {"a": "1", "b": "2"}, "HGETALL as a RESP3 map")
    r.close()
    r3.close()
    print("ok connect")


def commands():
    r = client()
    r.delete("py:str", "py:n", "py:list", "py:set")
    check(r.set("py:str", "value") is True, "SET")
    check(r.get("py:str") == "value", "GET")
    check(r.get("py:missing") is None, "GET missing")
    check(r.incr("py:n") == 1 and r.incrby("py:n", 41) == 42, "INCR")
    check(r.rpush("py:list", *range(10)) == 10, "RPUSH")
    check(r.lrange("py:list", 0, -1) == [str(i) for i in range(10)], "LRANGE")
    check(r.sadd("py:set", "x", "y") == 2 and r.smembers("py:set") == {"x", "y"}, "SET type")
    r.mset({"py:m1": "1", "py:m2": "2"})
    check(r.mget("py:m1", "py:m2", "py:nope") == ["1", "2", None], "MGET")
    check(r.expire("py:str", 100) and 0 < r.ttl("py:str") <= 100, "EXPIRE/TTL")
    big = "x" * (1 << 20)
    r.set("py:big", big)
    check(r.get("py:big") == big, "1 MiB value")
    check(r.eval("return redis.call('INCR', KEYS[1])", 1, "py:n") == 43, "EVAL")
    try:
        r.execute_command("NOSUCHCOMMAND")
        raise AssertionError("unknown command accepted")
    except redis.ResponseError as e:
        check("unknown command" in str(e), f"unknown command error: {e}")
    check(r.get("py:str") == "value", "connection usable after an error")
    r.close()
    r_db = client(db=3)
    r_db.set("py:db3", "three")
    check(client().get("py:db3") is None, "db 3 is not db 0")
    check(r_db.get("py:db3") == "three", "db 3 keeps its key")
    r_db.close()
    print("ok commands")


def pipelines():
    r = client()
    r.delete("py:p", "py:t")
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.rpush("py:p", i)
    p.lrange("py:p", 0, 2)
    out = p.execute()
    check(out[:500] == list(range(1, 501)), "pipeline replies in order")
    check(out[500] == ["0", "1", "2"], "pipeline last reply")
    t = r.pipeline(transaction=True)
    t.set("py:t", "a").incr("py:tn").get("py:t").lrange("py:p", -1, -1)
    out = t.execute()
    check(out[0] is True and out[2] == "a" and out[3] == ["499"], f"MULTI/EXEC: {out}")
    # A failing command inside a transaction does not abort the others.
    t = r.pipeline(transaction=True)
    t.set("py:t2", "x").lpush("py:t2", "y").get("py:t2")
    out = t.execute(raise_on_error=False)
    check(out[0] is True and isinstance(out[1], redis.ResponseError) and out[2] == "x", f"{out}")
    r.close()
    print("ok pipeline")


def watch():
    r = client()
    r.set("py:w", "1")

    def double(pipe):
        v = int(pipe.get("py:w"))
        pipe.multi()
        pipe.set("py:w", v * 2)

    r.transaction(double, "py:w")
    check(r.get("py:w") == "2", "WATCH transaction")
    # A key changed by another client after WATCH makes EXEC fail.
    with r.pipeline() as pipe:
        pipe.watch("py:w")
        client().set("py:w", "changed")
        pipe.multi()
        pipe.set("py:w", "lost")
        try:
            pipe.execute()
            raise AssertionError("EXEC succeeded after the watched key changed")
        except redis.WatchError:
            pass
    check(r.get("py:w") == "changed", "watched write was not applied")
    r.close()
    print("ok watch")


def wait_message(p, want_type, deadline=5.0):
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        m = p.get_message(timeout=0.5)
        if m is not None and m["type"] == want_type:
            return m
    raise AssertionError(f"no {want_type} message within {deadline}s")


def pubsub(protocol):
    r = client(protocol=protocol)
    p = r.pubsub()
    p.subscribe("py:news")
    check(wait_message(p, "subscribe")["channel"] == "py:news", "subscribe confirmation")
    p.psubscribe("py:ne*")
    check(wait_message(p, "psubscribe")["channel"] == "py:ne*", "psubscribe confirmation")
    publisher = client()
    check(publisher.publish("py:news", "hello") == 2, "PUBLISH reached channel and pattern")
    m = wait_message(p, "message")
    check((m["channel"], m["data"]) == ("py:news", "hello"), f"message: {m}")
    m = wait_message(p, "pmessage")
    check((m["pattern"], m["data"]) == ("py:ne*", "hello"), f"pmessage: {m}")
    check(publisher.pubsub_numsub("py:news") == [("py:news", 1)], "PUBSUB NUMSUB")
    p.unsubscribe("py:news")
    wait_message(p, "unsubscribe")
    p.punsubscribe()
    wait_message(p, "punsubscribe")
    check(publisher.publish("py:news", "nobody") == 0, "no subscriber after unsubscribe")
    p.close()
    # The connection went back to the pool and serves ordinary commands again.
    check(r.ping() is True, "PING after pub/sub")
    r.close()
    publisher.close()
    print(f"ok pubsub resp{protocol}")


def pool():
    threads_n, rounds = 20, 200
    pool = redis.BlockingConnectionPool(
        host=HOST,
        port=PORT,
        password=PASSWORD,
        max_connections=20,
        timeout=10,
        decode_responses=True,
        socket_timeout=10,
    )
    r = redis.Redis(connection_pool=pool)
    r.delete("py:pool:total")
    errors = []

    def worker(i):
        try:
            c = redis.Redis(connection_pool=pool)
            for j in range(rounds):
                c.incr("py:pool:total")
                c.set(f"py:pool:{i}", j)
                got = c.get(f"py:pool:{i}")
                if got != str(j):
                    raise AssertionError(f"thread {i} round {j}: read {got!r}")
        except Exception as e:  # reported below, with the thread that failed
            errors.append(f"thread {i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not any(t.is_alive() for t in threads), "pool threads finished")
    check(not errors, "; ".join(errors))
    check(r.get("py:pool:total") == str(threads_n * rounds), "every INCR counted")
    pool.disconnect()
    print("ok pool")


def main():
    connect()
    commands()
    pipelines()
    watch()
    pubsub(2)
    pubsub(3)
    pool()
    print("all ok")


if __name__ == "__main__":
    main()
