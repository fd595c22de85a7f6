"""routing-laws: executable companion to Clark et al. (2022), *Unified Scaling Laws for Routed LMs*.

Modules, one job each (import them by name; the package itself re-exports nothing):

- ``config`` validated configs and the size ladder; ``errors`` error types and input checks (numbers,
  choices, output paths); ``io_utils`` atomic writes, strict JSON, the project root and provenance.
- ``data`` corpus to token batches and the BPE tokenizer; ``corpus`` builds the composite corpus from
  registry packages (download, unpack, extract via ``corpus_sources``); ``corpus_text`` the pure text
  stage (dedup, sections, stratified train/validation split, JSON lines) that ``corpus`` and ``data`` share.
- ``routers`` routing decisions (S-BASE, RL-R, HASH) and the S-BASE balance study; ``moe`` the routed
  FFN (capacity, dispatch/combine, expert matmuls, grouped all-to-all) and its metrics; ``mesh`` the
  mesh-axis names and checks (a leaf); ``parallel`` meshes, sharding and multi-host start-up;
  ``lm_head`` the tied output layer; ``model`` the Haiku LM and its parameter/FLOP accounting.
- ``train`` the optax loop (plan, compiled steps, evaluation, divergence, record); ``checkpoint`` the
  no-pickle checkpoint format; ``sweep`` grids of runs, validated records, runs.csv; ``plan`` what runs
  cost before they run (grid plans, step memory); ``bench`` throughput benchmarks.
- ``laws`` the scaling laws (Eq. 1 with E-hat, Eq. 2, EPC, N_cutoff), their fit results and fitters;
  ``fitting`` the numerical engine under them (Huber objective, batched Gauss-Newton, bootstrap).
  Pure numpy/scipy, no JAX.
- ``paper`` the paper's published numbers and its raw runs (loader, checks, selections).
- ``tables`` the printable ``Table`` and the one ``si`` number formatter; ``law_tables`` rows and tables
  of the laws and fits; ``run_tables`` rows and tables of run records (the paper's runs, our sweep).
- ``charts`` altair charts: offline renderers, row checks, builders; ``law_charts`` the charts of the law
  (coefficient intervals, EPC calculator, law explorer) and the in-chart formula checker.
- ``routing_demo`` the routers on a real batch, for chapters 1 (routing) and 7 (performance).
- ``book`` runs and builds the book; ``cli`` and ``commands`` the ``routing-laws`` command line.
"""

__version__ = "0.1.0"
