"""Random SAE parameters for the tests (not the SAE's own init: every leaf drawn, θ in
(0.1, 0.8))."""

import numpy as np


def random_params(sae, seed=0):
    rng = np.random.default_rng(seed)
    p = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in sae.spec().items()}
    if "log_threshold" in p:
        p["log_threshold"] = np.log(rng.uniform(0.1, 0.8, sae.n)).astype(np.float32)
    return p
