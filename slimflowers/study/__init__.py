"""study: many runs at once -- the study driver (`python -m slimflowers.study`), child processes, the report
(compare, plots) and the demo.

Imports every other package; nothing imports it."""
