"""What the bench scripts share: timing that is fair to both sides on a shared machine.

    from bench import bench_utils
    ours, baseline = bench_utils.best_rates([run_ours, run_baseline], num_images, repeats=3)
"""
import time


def best_rates(fns, n, repeats):
  """Best images/s of each fn over `repeats` passes of `n` images; the passes alternate between the fns so all see
  the same machine load, after one untimed warm-up call each (tracing and first-call costs excluded)."""
  for fn in fns:
    fn()
  best = [float("inf")] * len(fns)
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      start = time.perf_counter()
      fn()
      best[i] = min(best[i], time.perf_counter() - start)
  return [n / b for b in best]
