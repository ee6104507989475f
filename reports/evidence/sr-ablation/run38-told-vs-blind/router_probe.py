"""Can a degradation router tell the SR stage's two degradations apart from the LR crop alone?
Hand features + logistic regression, trained on crops of training photographs, scored on crops of validation ones."""
import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tocsr.core.data import load_train_val
from tocsr.core.sr.data import SRPairs


def feats(lr):
    g = ((lr + 1) / 2).clamp(0, 1).mean(0).numpy()
    # Immerkaer's fast noise estimate (1996): the image through a mask that cancels smooth structure
    m = g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:] - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:] + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:]
    sig = np.sqrt(np.pi / 2) * np.abs(m).mean() / 6
    lap = g[1:-1, 1:-1] * 4 - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    dx = np.abs(np.diff(g, axis=1))
    dy = np.abs(np.diff(g, axis=0))
    blk = (dx[:, 7::8].mean() + dy[7::8, :].mean()) / (dx.mean() + dy.mean() + 1e-8)
    return [np.log(sig + 1e-6), np.log(lap.std() + 1e-6), np.log(dx.mean() + dy.mean() + 1e-6), blk]

def dataset(photos, n, seed):
    p = SRPairs(photos, 128, 4, n, seed)
    X, y = [], []
    for i in range(n):
        _, lr = p[i]
        X.append(feats(lr))
        y.append(p.kind(i) == "realesrgan")
    return np.array(X), np.array(y)

train, val, _ = load_train_val(None, min_side=128)
Xtr, ytr = dataset(train, 1024, 0)
Xva, yva = dataset(val, 512, 1)
sc = StandardScaler().fit(Xtr)
clf = LogisticRegression(max_iter=1000).fit(sc.transform(Xtr), ytr)
acc_tr = clf.score(sc.transform(Xtr), ytr)
pred = clf.predict(sc.transform(Xva))
acc = (pred == yva).mean()
# per class, and a bootstrap interval over crops
rng = np.random.default_rng(0)
ok = pred == yva
boots = [ok[rng.integers(0, len(ok), len(ok))].mean() for _ in range(2000)]
out = {"train_photos": len(train), "val_photos": len(val), "train_crops": len(ytr), "val_crops": len(yva),
       "features": ["log noise sigma (Immerkaer 1996)", "log laplacian std", "log mean abs gradient", "8x8 blockiness"],
       "train_accuracy": acc_tr, "val_accuracy": acc, "val_accuracy_95": [float(np.quantile(boots, .025)), float(np.quantile(boots, .975))],
       "val_bicubic_called_realesrgan": float(pred[~yva].mean()), "val_realesrgan_called_bicubic": float(1 - pred[yva].mean())}
print(json.dumps(out, indent=1))
json.dump(out, open(sys.argv[1], "w"), indent=1)
