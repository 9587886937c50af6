#!/usr/bin/python3
"""seeds.py DIR — writes the starting corpora of the fuzz targets:
DIR/fuzz_options (command lines and INI files, good and bad) and
DIR/fuzz_weights (HDF5 files: a good W and the ways a W can be wrong)."""
import os
import sys

import h5py
import numpy as np

OPTIONS = {
    "good": "--units\n64\n--steps\n100\n--target-times\n10:T:5\n--flow-units-k\n0:3\n--max-lag\n20",
    "train": "train\n--task\nlatch\n--lag\n5\n--sweep-lag\n1:20:4\n--trials\n3",
    "ini": "[ini]\nunits = 32\nsteps = 50\nactivation = tanh\nflow-units-v = 1,3,5:9\n[gradflow]\nseed = 7\n",
    "ini-bad": "[ini]\nunits = 1e999\nsteps = -3\nnonsense\n",
    "huge": "--units\n4294967296\n--steps\n9223372036854775807\n--outputs\n-1",
    "nsquared": "--units\n3037000500\n--steps\n2",
    "lists": "--target-times\n1:T:0,5,,T:1\n--flow-units-k\n9:2:-1\n--grid\n2x0",
    "numbers": "--w-max\nnan\n--gain\n1e400\n--seed\n18446744073709551616\n--max-memory\n1E",
    "resume": "--resume\n--checkpoint-every\n-1\n--max-walltime\ninf",
}


def weights(d):
    rng = np.random.default_rng(1)
    w = rng.uniform(-0.5, 0.5, (8, 8))

    def h5(name, build):
        with h5py.File(os.path.join(d, name), "w") as f:
            build(f)

    h5("good.h5", lambda f: f.create_dataset("W", data=w))
    h5("float32.h5", lambda f: f.create_dataset("W", data=w.astype(np.float32)))
    h5("int.h5", lambda f: f.create_dataset("W", data=np.arange(64, dtype=np.int32).reshape(8, 8)))
    h5("vector.h5", lambda f: f.create_dataset("W", data=w[0]))
    h5("cube.h5", lambda f: f.create_dataset("W", data=np.zeros((2, 2, 2))))
    h5("oblong.h5", lambda f: f.create_dataset("W", data=rng.uniform(size=(8, 9))))
    h5("nan.h5", lambda f: f.create_dataset("W", data=np.where(w > 0.3, np.nan, w)))
    h5("empty.h5", lambda f: f.create_dataset("W", shape=(0, 0), dtype="f8"))
    h5("string.h5", lambda f: f.create_dataset("W", data="not a matrix"))
    h5("group.h5", lambda f: f.create_group("W"))
    h5("compound.h5", lambda f: f.create_dataset("W", data=np.zeros((4, 4), dtype=[("a", "f8"), ("b", "i4")])))
    # a tiny file that claims a huge matrix (chunked, nothing allocated)
    h5("huge.h5", lambda f: f.create_dataset("W", shape=(2 ** 31, 2 ** 31), dtype="f8", chunks=(1, 64)))
    h5("big.h5", lambda f: f.create_dataset("W", shape=(100000, 100000), dtype="f8", chunks=(1, 64)))
    with open(os.path.join(d, "good.h5"), "rb") as f:
        good = f.read()
    with open(os.path.join(d, "truncated.h5"), "wb") as f:
        f.write(good[: len(good) // 2])
    with open(os.path.join(d, "flipped.h5"), "wb") as f:
        f.write(good[:600] + bytes(b ^ 0x5A for b in good[600:700]) + good[700:])


def main():
    root = sys.argv[1]
    for target in ("fuzz_options", "fuzz_weights"):
        os.makedirs(os.path.join(root, target), exist_ok=True)
    for name, text in OPTIONS.items():
        with open(os.path.join(root, "fuzz_options", name), "w") as f:
            f.write(text)
    weights(os.path.join(root, "fuzz_weights"))


if __name__ == "__main__":
    main()
