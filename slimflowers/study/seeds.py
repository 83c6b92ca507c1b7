"""A study's runs per seed: `--seeds=N` trains each model N times; the first run keeps the one-seed layout
(RUNS/<model>, so older studies resume) and the others are RUNS/<model>-seed<S> with S = --seed + i."""
import os


def base_seed(cfg):
  """The --seed forwarded to the trainers (the last one given wins, as absl reads them), else the default 0."""
  seeds = [int(flag.split("=", 1)[1]) for flag in cfg.train_flags if flag.startswith("--seed=")]
  return seeds[-1] if seeds else 0


def run_name(cfg, model, seed_index=0):
  """A run's directory name: the model's for its first seed (the one-seed layout, so older studies resume), then
  `<model>-seed<S>` with S = --seed + seed_index."""
  return model if not seed_index else f"{model}-seed{base_seed(cfg) + seed_index}"


def run_path(cfg, model, seed_index=0):
  return os.path.join(cfg.runs_dir, run_name(cfg, model, seed_index))


def seed_flags(cfg, seed_index=0):
  """The trainer's --seed for a further seed (nothing for the first: its command is the one-seed study's)."""
  return [f"--seed={base_seed(cfg) + seed_index}"] if seed_index else []
