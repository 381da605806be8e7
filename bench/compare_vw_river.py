# SPDX-License-Identifier: Apache-2.0
# Runs VW (native parser over the text file) and River (Python, per example)
# on the stream bench_trainer wrote; prints examples/s and progressive
# logloss next to learnd's (read from learnd.txt).
import math
import re
import sys
import time

out, river_n = sys.argv[1], int(sys.argv[2])

learnd = {}
for line in open(f"{out}/learnd.txt"):
    m = re.search(r"bits=(\d+) batch=(\d+)\s+([\d.]+) ns/nnz\s+(\d+) ex/s\s+"
                  r"progressive_logloss=([\d.]+)", line)
    # the plain learn cases; "+champion" also scores a frozen copy
    if m and "+champion" not in line:
        learnd[(int(m[1]), int(m[2]))] = (float(m[4]), float(m[5]))

import vowpalwabbit

def vw_run(args):
    t0 = time.perf_counter()
    ws = vowpalwabbit.Workspace(f"-d {out}/stream.vw {args} --quiet")
    if hasattr(ws, "run_parser"):
        ws.run_parser()
    n = ws.get_weighted_examples()
    loss = ws.get_sum_loss() / n if n else float("nan")
    ws.finish()
    return n / (time.perf_counter() - t0), loss, int(n)

res = {}
res["vw ftrl"] = vw_run("-b 22 --loss_function logistic --ftrl "
                        "--ftrl_alpha 0.1 --ftrl_beta 1")
res["vw default"] = vw_run("-b 22 --loss_function logistic")

from river import linear_model, optim
model = linear_model.LogisticRegression(optimizer=optim.FTRLProximal(
    alpha=0.1, beta=1.0, l1=0.0, l2=0.0))
rows = []
with open(f"{out}/stream.txt") as f:
    for i, line in enumerate(f):
        if i >= river_n:
            break
        tok = line.split()
        rows.append((int(tok[0]), {t: 1.0 for t in tok[1:]}))
t0 = time.perf_counter()
ll = 0.0
for y, x in rows:
    p = min(max(model.predict_proba_one(x).get(True, 0.5), 1e-15), 1 - 1e-15)
    ll += -math.log(p if y else 1 - p)
    model.learn_one(x, bool(y))
dt = time.perf_counter() - t0
res["river ftrl"] = (len(rows) / dt, ll / len(rows), len(rows))

ref = learnd.get((22, 256)) or next(iter(learnd.values()))
print(f"{'system':<26}{'examples/s':>12}{'learnd/x':>10}"
      f"{'prog. logloss':>15}{'examples':>10}")
for (bits, batch), (eps, ll) in sorted(learnd.items()):
    print(f"{'learnd ftrl b=%d batch=%d' % (bits, batch):<26}{eps:>12.0f}"
          f"{'':>10}{ll:>15.5f}")
for name, (eps, ll, n) in res.items():
    print(f"{name:<26}{eps:>12.0f}{ref[0] / eps:>10.1f}{ll:>15.5f}"
          f"{n:>10}")
print("(VW's loss is its progressive average loss; learnd/x uses "
      "learnd bits=22 batch=256; River runs the first "
      f"{river_n} examples)")
