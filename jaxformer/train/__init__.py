"""Training: text → tokens → jitted steps → checkpoints → a model that writes.

config.py      TrainConfig, presets, --key value parsing
data.py        corpus → tokenizer → token files (cached), train/val split
sampler.py     the batches: a pure function of (seed, step)
loss.py        cross-entropy in f32, bits per byte
optim.py       clip → AdamW or Muon (warmup-stable-decay or cosine), decay on matrices
budget.py      --max_minutes: sizing a run, its seconds, when a WSD run decays
length.py      the run's length as the host knows it: fixed, or set by the clock
remat.py       named rematerialisation policies
step.py        the jitted train step (accumulation, bf16, donation) and eval step
checkpoint.py  orbax checkpoints, run directories, load_for_inference
resolve.py     which run a command means: new, to resume, or done
loop.py        the loop
finish.py      the run's end: the full val set, the loss curve, a sample (jaxformer.generate)
progress.py    the run's progress: bar, metrics, evals, MFU, experts' load
preempt.py     SIGTERM as a request: a checkpoint at the next step boundary, then exit 0
report.py      metrics lines, MFU, the loss curve; atomic.py atomic writes
cli.py         `jaxformer train`

from jaxformer.train import TrainConfig
from jaxformer.train.loop import train
summary = train(TrainConfig.preset("tiny", out="runs/tiny"))
"""

from .config import PRESETS, ConfigError, TrainConfig

__all__ = ["PRESETS", "ConfigError", "TrainConfig"]
