"""Drive a running bouncer api with SendGrid's official Python library.

  BOUNCER_URL=http://127.0.0.1:8080 BOUNCER_KEY=SG.x.y BOUNCER_MSG=msg-id \
      python sendgrid_py.py cases.json

Runs every case of cases.json through sendgrid.SendGridAPIClient (host
pointed at BOUNCER_URL; the library's client builds each path from
attribute chains, as SendGrid's README shows) and prints one line per
failure, naming the client and the route. Exit status 1 when any failed.
"""

import json
import os
import sys
import time

import python_http_client
import sendgrid

CLIENT = "python sendgrid " + getattr(sendgrid, "__version__", "?")


def subst(v, saved):
    if isinstance(v, str):
        for k, s in saved.items():
            v = v.replace("{" + k + "}", str(s))
        return v
    if isinstance(v, list):
        return [subst(x, saved) for x in v]
    if isinstance(v, dict):
        return {k: subst(x, saved) for k, x in v.items()}
    return v


def mismatch(want, got, where="$"):
    """Where got does not hold want (objects: want's keys; arrays: want's
    elements as a prefix), or None."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return "%s: want an object, got %r" % (where, got)
        for k, w in want.items():
            if k not in got:
                return "%s.%s: missing" % (where, k)
            m = mismatch(w, got[k], where + "." + k)
            if m:
                return m
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) < len(want):
            return "%s: want an array of at least %d, got %r" % (where, len(want), got)
        for i, w in enumerate(want):
            m = mismatch(w, got[i], "%s[%d]" % (where, i))
            if m:
                return m
        return None
    if want != got:
        return "%s: want %r, got %r" % (where, want, got)
    return None


def call(sg, case, saved):
    node = sg.client
    path = subst(case["path"], saved)
    assert path.startswith("/v3/")
    for seg in path[len("/v3/"):].split("/"):
        node = node._(seg)
    kwargs = {}
    if "query" in case:
        kwargs["query_params"] = subst(case["query"], saved)
    if "body" in case:
        kwargs["request_body"] = subst(case["body"], saved)
    method = getattr(node, case["method"].lower())
    try:
        r = method(**kwargs)
        status, body = r.status_code, r.body
    except python_http_client.exceptions.HTTPError as e:  # 4xx and 5xx raise
        status, body = e.status_code, e.body
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    return status, (json.loads(body) if body else None)


def main():
    cases = json.load(open(sys.argv[1]))["cases"]
    sg = sendgrid.SendGridAPIClient(api_key=os.environ["BOUNCER_KEY"], host=os.environ["BOUNCER_URL"])
    saved = {"msg": os.environ.get("BOUNCER_MSG", "")}
    failures = 0
    for i, case in enumerate(cases):
        what = "%s: case %d %s %s" % (CLIENT, i + 1, case["route"], case.get("note", ""))
        try:
            status, body = call(sg, case, saved)
            # "poll": a status that means "not yet": ask again, for a minute at most.
            for _ in range(120):
                if "poll" not in case or status != case["poll"]:
                    break
                time.sleep(0.5)
                status, body = call(sg, case, saved)
        except Exception as e:  # the library failed: a shape it cannot take
            print("FAIL %s: %s: %s" % (what, type(e).__name__, e))
            failures += 1
            continue
        problem = None
        if status != case["status"]:
            problem = "status %d, want %d: %s" % (status, case["status"], json.dumps(body)[:300])
        elif "length" in case and (not isinstance(body, list) or len(body) != case["length"]):
            problem = "want %d entries, got %s" % (case["length"], json.dumps(body)[:300])
        elif "want" in case:
            m = mismatch(subst(case["want"], saved), body)
            if m:
                problem = m + " in " + json.dumps(body)[:300]
        if problem:
            print("FAIL %s: %s" % (what, problem))
            failures += 1
            continue
        for name, field in case.get("save", {}).items():
            saved[name] = body[field]
    print("%s: %d cases, %d failed" % (CLIENT, len(cases), failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
