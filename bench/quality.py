# SPDX-License-Identifier: Apache-2.0
# Model quality of learnd's default config against Vowpal Wabbit and River,
# progressive (test-then-train) logloss and AUC, on the same examples in the
# same order. Each stream is written once per input (learnd: Avro records
# in Confluent framing with the stream's .avsc, as a user with a schema
# registry configures it, and "<y>\t<JSON event>" lines; VW: its text
# format; River: the rows as dicts) and every system learns from it. learnd
# runs both inputs and must give the same predictions from each.
# Predictions are scored by one function here, so the metrics are computed
# identically for all systems.
#
# Usage: quality.py BENCH_QUALITY OUTDIR [N]   (N examples per generated
# stream, default 100000; River's shipped datasets are used whole; env
# LEARND_SET="key=value ..." overrides trainer keys, REPEAT=3 timing runs)
import json
import math
import os
import struct
import subprocess
import sys
import time

import numpy as np

BENCH, OUT = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 100000
# learnd and VW are timed REPEAT times and the best rate is kept: the
# machine may be shared, and the predictions are deterministic
REPEAT = int(os.environ.get("REPEAT", "3"))
os.makedirs(OUT, exist_ok=True)


# ---- streams -------------------------------------------------------------
# A stream is (name, dense field names, hashed field names, rows), a row
# being (y, {field: value}) with floats for dense fields and strings or
# lists of strings for hashed ones.

def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def user_stream(n, seed=1, drift_at=None):
    """(a) Like the issue's click stream: raw-scaled numerics (price in
    hundreds, age in tens, a duration in seconds), string categoricals, a
    string array of tags. drift_at: from that example on, the categorical
    effects are redrawn and the price effect flips (c)."""
    rng = np.random.default_rng(seed)
    n_ad, n_tag = 5000, 300
    countries = [f"c{i}" for i in range(40)]
    devices = ["ios", "android", "web", "tv", "other"]

    def effects():
        return (rng.normal(0, 0.6, len(countries)), rng.normal(0, 0.4, 5),
                rng.normal(0, 0.8, n_ad), rng.normal(0, 0.5, n_tag))

    eff = effects()
    price_w = -0.006
    ad_p = 1.0 / np.arange(1, n_ad + 1) ** 1.05
    ad_p /= ad_p.sum()
    ads = rng.choice(n_ad, size=n, p=ad_p)
    cp = np.r_[np.full(10, 0.07), np.full(30, 0.01)]
    ctry = rng.choice(len(countries), size=n, p=cp / cp.sum())
    dev = rng.integers(0, 5, size=n)
    price = np.round(np.exp(rng.normal(5.6, 0.6, size=n)), 2)   # ~ 300
    age = rng.integers(18, 75, size=n).astype(float)
    dur = np.round(rng.exponential(90.0, size=n), 1)
    ntags = rng.integers(0, 5, size=n)
    rows = []
    for i in range(n):
        if drift_at is not None and i == drift_at:
            eff = effects()
            price_w = +0.004
        ec, ed, ea, et = eff
        tags = sorted(set(int(t) for t in rng.integers(0, n_tag, ntags[i])))
        z = (-1.2 + price_w * (price[i] - 300) + 0.04 * (age[i] - 45) -
             0.004 * dur[i] + ec[ctry[i]] + ed[dev[i]] + ea[ads[i]] +
             sum(et[t] for t in tags))
        y = int(rng.random() < sigmoid(z))
        rows.append((y, {"price": float(price[i]), "age": float(age[i]),
                         "duration": float(dur[i]),
                         "country": countries[ctry[i]],
                         "device": devices[dev[i]], "ad": f"a{ads[i]}",
                         "tags": [f"t{t}" for t in tags]}))
    return rows


def sparse_stream(n, seed=2):
    """(b) High-cardinality categoricals only: 12 fields, Zipf over 10^5
    values each, labels from hidden per-value effects."""
    rng = np.random.default_rng(seed)
    nf, card = 12, 100000
    ranks = np.arange(1, card + 1)
    p = 1.0 / ranks ** 1.1
    p /= p.sum()
    vals = rng.choice(card, size=(n, nf), p=p)
    # hidden effect of a value: a hash of (field, value), no table
    def eff(f, v):
        h = (v * 2654435761 + f * 40503) & 0xffffffff
        h = ((h ^ (h >> 15)) * 2246822519) & 0xffffffff
        return ((h >> 8) / 16777216.0 - 0.5) * 1.6
    rows = []
    for i in range(n):
        z = -1.0 + sum(eff(f, int(vals[i, f])) for f in range(nf))
        y = int(rng.random() < sigmoid(z))
        rows.append((y, {f"f{f}": f"v{vals[i, f]}" for f in range(nf)}))
    return rows


def river_rows(ds, limit=None):
    """A River dataset or generator as rows: numbers dense, others hashed."""
    rows = []
    for i, (x, y) in enumerate(ds):
        if limit is not None and i >= limit:
            break
        r = {}
        for k, v in x.items():
            # a valid Avro name: Bananas' features are named 0 and 1
            k = str(k).replace(" ", "_")
            k = k if k[0].isalpha() or k[0] == "_" else "x" + k
            r[k] = float(v) if isinstance(v, (int, float, np.number)) and \
                not isinstance(v, bool) else str(v)
        rows.append((int(bool(y)), r))
    return rows


def split_fields(rows):
    dense, hashed = [], []
    for k, v in rows[0][1].items():
        (dense if isinstance(v, float) else hashed).append(k)
    return dense, hashed


def streams():
    from river import datasets
    from river.datasets import synth
    out = [("user", user_stream(N)),
           ("sparse", sparse_stream(N)),
           ("drift", user_stream(N, seed=3, drift_at=N // 2))]
    agr = synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=42),
        drift_stream=synth.Agrawal(classification_function=4, seed=42),
        position=N // 2, width=N // 20, seed=1)
    out.append(("agrawal-drift", river_rows(agr, N)))
    out.append(("phishing", river_rows(datasets.Phishing())))
    out.append(("bananas", river_rows(datasets.Bananas())))
    res = []
    for name, rows in out:
        dense, hashed = split_fields(rows)
        res.append((name, dense, hashed, rows))
    return res


# ---- writers --------------------------------------------------------------

def avro_long(n):
    n = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_str(s):
    b = s.encode()
    return avro_long(len(b)) + b


def avro_schema(name, dense, hashed, rows):
    """The schema a producer of this stream would register: event_time a
    long, numbers doubles, strings strings, lists arrays of strings."""
    fields = [{"name": "event_time", "type": "long"}]
    fields += [{"name": k, "type": "double"} for k in dense]
    for k in hashed:
        lst = any(isinstance(x[k], list) for _, x in rows)
        fields.append({"name": k, "type": {"type": "array", "items": "string"}
                       if lst else "string"})
    return {"type": "record", "name": "Event",
            "namespace": "bench." + name.replace("-", "_"), "fields": fields}


def avro_datum(schema, ev):
    out = bytearray()
    for f in schema["fields"]:
        v, t = ev[f["name"]], f["type"]
        if t == "long":
            out += avro_long(v)
        elif t == "double":
            out += struct.pack("<d", v)
        elif t == "string":
            out += avro_str(v)
        else:
            if v:
                out += avro_long(len(v))
                for s in v:
                    out += avro_str(s)
            out += avro_long(0)
    return bytes(out)


def vw_escape(s):
    return s.replace(" ", "_").replace(":", ";").replace("|", "/")


def write_stream(name, dense, hashed, rows):
    lp, vp = f"{OUT}/{name}.learnd", f"{OUT}/{name}.vw"
    ap, sp = f"{OUT}/{name}.avro", f"{OUT}/{name}.avsc"
    schema = avro_schema(name, dense, hashed, rows)
    with open(sp, "w") as fs:
        json.dump(schema, fs, indent=1)
    with open(lp, "w") as fl, open(vp, "w") as fv, open(ap, "wb") as fa:
        for i, (y, x) in enumerate(rows):
            ev = {"event_time": 1700000000000 + i}
            ev.update(x)
            fl.write(f"{y}\t{json.dumps(ev, separators=(',', ':'))}\n")
            # Confluent framing: magic 0, schema id 1 (big-endian)
            val = b"\0\0\0\0\1" + avro_datum(schema, ev)
            fa.write(struct.pack("<BI", y, len(val)) + val)
            parts = [("1" if y else "-1") + " "]
            if dense:
                parts.append("|n " + " ".join(
                    f"{k}:{x[k]!r}" for k in dense if x[k] != 0.0))
            for k in hashed:
                v = x[k]
                vals = v if isinstance(v, list) else [v]
                # one namespace per field, as learnd's default namespace
                parts.append(f" |{k} " + " ".join(vw_escape(s)
                                                  for s in vals))
            fv.write("".join(parts) + "\n")
    return lp, vp, ap, sp


# ---- metrics --------------------------------------------------------------

def scores(y, p):
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    ll = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    # AUC by ranks (ties get the mean rank)
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    ranks = np.empty(len(p))
    i = 0
    while i < len(p):
        j = i
        while j + 1 < len(p) and ps[j + 1] == ps[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    npos = y.sum()
    nneg = len(y) - npos
    auc = float((ranks[y == 1].sum() - npos * (npos + 1) / 2) /
                (npos * nneg)) if npos and nneg else float("nan")
    return ll, auc


# ---- systems ---------------------------------------------------------------

def run_learnd(lp, dense, hashed, extra=(), avsc=None):
    pred = lp + ".pred"
    cmd = [BENCH, lp, pred]
    if avsc:
        cmd += ["--avro", avsc]
    if dense:
        cmd += ["--dense", ",".join(dense)]
    if hashed:
        cmd += ["--hash", ",".join(hashed)]
    for kv in extra:
        cmd += ["--set", kv]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    kv = dict(f.split("=") for f in out.stdout.split())
    return (np.fromfile(pred, dtype="<f4"), float(kv["examples_per_s"]),
            float(kv["decode_learn_examples_per_s"]))


def run_vw(vp, args):
    import vowpalwabbit
    pred = vp + ".pred"
    t0 = time.perf_counter()
    ws = vowpalwabbit.Workspace(
        f"-d {vp} --loss_function logistic --link logistic -p {pred} "
        f"--quiet {args}")
    ws.finish()
    dt = time.perf_counter() - t0
    p = np.loadtxt(pred, usecols=0, ndmin=1)
    return p, len(p) / dt


def river_x(x):
    """River sees numbers as numbers and strings one-hot ("field=value")."""
    r = {}
    for k, v in x.items():
        if isinstance(v, float):
            r[k] = v
        elif isinstance(v, list):
            for s in v:
                r[f"{k}={s}"] = 1.0
        else:
            r[f"{k}={v}"] = 1.0
    return r


def run_river(rows, model):
    xs = [river_x(x) for _, x in rows]
    p = np.empty(len(rows))
    t0 = time.perf_counter()
    for i, ((y, _), x) in enumerate(zip(rows, xs)):
        p[i] = model.predict_proba_one(x).get(True, 0.5)
        model.learn_one(x, bool(y))
    return p, len(rows) / (time.perf_counter() - t0)


def main():
    from river import linear_model, optim, preprocessing
    systems = [
        ("learnd defaults", None),
        ("vw defaults", "vw:"),
        ("vw --ftrl", "vw:--ftrl"),
        ("river scaler|LR", "river:sgd"),
        ("river scaler|LR(FTRL)", "river:ftrl"),
    ]
    extra = [e for e in os.environ.get("LEARND_SET", "").split() if e]
    if os.environ.get("ONLY_LEARND"):
        systems = systems[:2] if os.environ.get("ONLY_LEARND") == "vw" \
            else systems[:1]
    if extra:
        systems[0] = (f"learnd {' '.join(extra)}", None)
    table = []
    for name, dense, hashed, rows in streams():
        lp, vp, ap, sp = write_stream(name, dense, hashed, rows)
        y = np.array([r[0] for r in rows])
        for sname, how in systems:
            ejson = elearn = None
            if how is None:
                # Avro (the production decoder) and JSON: the same features,
                # so the same predictions, bit for bit
                elearn = eps = ejson = 0
                for _ in range(REPEAT):
                    p, el, ea = run_learnd(ap, dense, hashed, extra, sp)
                    pj, _, ej = run_learnd(lp, dense, hashed, extra)
                    assert np.array_equal(p, pj), (name, "avro != json")
                    elearn, eps, ejson = (max(elearn, el), max(eps, ea),
                                          max(ejson, ej))
            elif how.startswith("vw:"):
                eps = 0
                for _ in range(REPEAT):
                    p, e = run_vw(vp, how[3:])
                    eps = max(eps, e)
            else:
                opt = (optim.FTRLProximal() if how.endswith("ftrl")
                       else optim.SGD(0.01))
                model = preprocessing.StandardScaler() | \
                    linear_model.LogisticRegression(optimizer=opt)
                p, eps = run_river(rows, model)
            assert len(p) == len(y), (sname, len(p), len(y))
            ll, auc = scores(y, p)
            table.append((name, len(y), sname, ll, auc, eps, ejson, elearn))
    print(f"{'stream':<14}{'examples':>8}  {'system':<24}{'logloss':>9}"
          f"{'AUC':>9}{'ex/s':>10}{'JSON ex/s':>10}{'learn ex/s':>11}")
    for r in table:
        e2 = f"{r[6]:>10.0f}" if r[6] else f"{'':>10}"
        e3 = f"{r[7]:>11.0f}" if r[7] else f"{'':>11}"
        print(f"{r[0]:<14}{r[1]:>8}  {r[2]:<24}{r[3]:>9.5f}{r[4]:>9.5f}"
              f"{r[5]:>10.0f}{e2}{e3}")
    print("ex/s: learnd from Avro records (Confluent framing) through its "
          "decoder, field map, hashing and trainer; VW parsing its own text "
          "format and learning (workspace start included); River learning "
          "from Python dicts built beforehand. JSON ex/s: learnd from JSON "
          "records. learn ex/s: learnd's trainer alone on decoded examples. "
          f"learnd and VW: best of {REPEAT} runs.")
    if len(systems) < 2:
        return
    print("\nlearnd vs the others (logloss difference, < 0: learnd better; "
          "speed ratio against VW defaults, Avro and JSON input):")
    by = {(r[0], r[2]): r for r in table}
    others = [s for s, _ in systems[1:] if (s != "vw --ftrl")]
    for name in dict.fromkeys(r[0] for r in table):
        l = by[(name, systems[0][0])]
        diffs = [(o, l[3] - by[(name, o)][3]) for o in others
                 if (name, o) in by]
        v = by.get((name, "vw defaults"))
        speed = (f"  speed x{l[5] / v[5]:.1f} (Avro) x{l[6] / v[5]:.1f} "
                 f"(JSON)" if v else "")
        miss = [o for o, d in diffs if d > 0]
        print(f"{name:<14} " + "  ".join(f"{o} {d:+.5f}" for o, d in diffs) +
              speed + ("  MISS vs " + ", ".join(miss) if miss else "  ok"))


main()
