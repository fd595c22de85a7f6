"""Writes chapters/01_routing.ipynb (kept so the chapter can be regenerated and reviewed as Python)."""
from routing_laws.book import new_notebook, write_notebook

cells = [
("md", """# Routing networks

**Overview.** A routed layer replaces one feed-forward network (FFN) by E expert FFNs and a *router*
that sends each token to one of them. This chapter runs the three routers of Clark et al. (2022) —
S-BASE (Sinkhorn balancing), RL-R (a REINFORCE policy) and HASH (a fixed table) — live on a real
batch of text and shows what each one does with it: the load it puts on each expert, Sinkhorn
balancing sweep by sweep, the hash table, RL-R's policy, and the capacity rule that drops tokens
when an expert is over-full.

**What you need.** Nothing beyond `make book`. The batch comes from the book's corpus (the assembled
composite if `make corpus` was run, else the committed public-domain sample). The routers act on
what a routed layer really receives: we initialise the profile's language model with fresh random
weights, run the batch through it and capture the LayerNorm-ed hidden states entering its first
routed FFN, and that layer's freshly initialised router weights turn them into logits. The model
is untrained, so these are the routing decisions *at the start of training*."""),
("code", """import jax
import numpy as np
from routing_laws import book, charts, data, moe, routers
from routing_laws import routing_demo as demo
from routing_laws.config import RouterConfig, model_config

charts.enable_offline()
P = book.profile_params(profile)
E = P["n_experts"]
print(f"profile {P['profile']}: model {P['model_size']}, E = {E} experts")"""),
("md", """## A real batch at the routed layer

One training batch (16 windows of 128 tokens, from the held-out stream) goes through the
initialised model; `routing_demo.routed_inputs` returns the hidden states entering the routed FFN
and the router logits `h @ w_router`."""),
("code", """dataset = data.get_dataset()
tok = data.load_tokenizer()
tokens_BT = data.train_batch(dataset.val, step=0, batch_size=16, seq_len=128, seed=0)[:, :-1]
cfg = model_config(P["model_size"], vocab_size=dataset.vocab_size, router=RouterConfig(kind="sbase", n_experts=E))
inp = demo.routed_inputs(cfg, tokens_BT, seed=0)
logits_NE, ids_N = inp["logits_NE"], inp["token_ids_N"]
N = logits_NE.shape[0]
print(f"corpus {dataset.meta.get('corpus')}: {N:,} tokens routed together at FFN layer {inp['layer']} "
      f"(d_model {cfg.d_model}); router logits std {float(np.std(logits_NE)):.3f}")
print("first tokens:", repr(tok.decode(ids_N[:24].tolist())))"""),
("md", """## Expert loads: plain argmax vs the three routers

*Plain argmax* sends each token to its highest-logit expert; nothing keeps the load even, and the
hidden states of real text are far from isotropic, so a few experts get most tokens. **S-BASE**
runs Sinkhorn on the batch's logits so that every expert receives N/E tokens, then takes each
token's best expert in the balanced plan. **RL-R** *samples* its expert from softmax(logits) in
training; a fresh router's policy is close to uniform, so the sample spreads tokens over every
expert, though unevenly: only a small balance penalty in training pushes it towards N/E.
**HASH** ignores the hidden state: a fixed random table maps each vocabulary id to an expert, so the
load follows word frequencies. The dashed line is the uniform share 1/E."""),
("code", """experts = demo.route_all(logits_NE, ids_N, dataset.vocab_size, seed=0)
load = demo.load_rows(experts, E)
for kind, e_N in experts.items():
    c = np.bincount(e_N, minlength=E)
    print(f"{demo.ROUTER_LABELS[kind]:16s} max/mean load {c.max() / c.mean():5.2f}   tokens per expert {c.tolist()}")
charts.grouped_bar_chart(load, x="expert", y="share", group="router", x_title="expert",
                         y_title="share of the batch's tokens (fraction)", group_title="router",
                         rule_y=1 / E, rule_label="uniform share 1/E",
                         title="Expert load per router (click the legend to highlight one)")"""),
("md", """## Sinkhorn balancing, sweep by sweep

S-BASE standardises the logits (`routers.standardize_logits`), then alternates a *row* step (each
token's row of the plan sums to 1) and a *column* step (each expert's column sums to N/E), at a
temperature annealed from 1 down to τ = 0.05 over the first half of the sweeps. After a row step the
rows are exact by construction; the column sums show how far the plan still is from balanced.
The token's expert is the argmax of its row of the plan, so the load below converges with the
columns."""),
("code", """rc = RouterConfig(kind="sbase", n_experts=E)
trace = demo.sinkhorn_trace(logits_NE, rc.sinkhorn_iters, rc.sinkhorn_temperature)
lines, bars = demo.sinkhorn_rows(trace)
for i in (0, 1, 2, 5, 10, 25, 50, rc.sinkhorn_iters):
    c = trace["load_IE"][i]
    print(f"after {i:3d} sweeps (tau {trace['taus_I'][i]:.3f}): argmax max/mean load {c.max() / c.mean():5.2f}, "
          f"column sums {trace['colsum_IE'][i].min() / trace['target']:.3f}..{trace['colsum_IE'][i].max() / trace['target']:.3f} x N/E")
charts.xy_chart(lines, x="iteration", y="value", color="series", color_title="quantity", mark="line", log_y=True,
                x_title="Sinkhorn sweeps (count)", y_title="ratio to the balanced value (log scale)", zoom=True,
                title="Sinkhorn: imbalance vs sweeps (drag to zoom)")"""),
("code", """charts.slider_bar_chart(bars, x="expert", y="share", step="iteration", step_name="sweeps",
                        x_title="expert", y_title="share of the batch's tokens (fraction)",
                        rule_y=1 / E, rule_label="uniform share 1/E",
                        title="Load after k Sinkhorn sweeps (move the slider)")"""),
("md", """## The hash table

`routers.hash_table(V, E, seed)` deals a seeded random permutation of the vocabulary round-robin to
the experts, so every expert owns ⌊V/E⌋ or ⌈V/E⌉ token ids — but not the same number of *tokens*
of text, because a few ids (spaces, punctuation, common words) are very frequent."""),
("code", """table = routers.hash_table(dataset.vocab_size, E, RouterConfig(kind="hash", n_experts=E).hash_seed)
ids_per_expert = np.bincount(table, minlength=E)
batch_per_expert = np.bincount(table[ids_N], minlength=E)
hash_rows = ([{"expert": f"{e:02d}", "what": "vocabulary ids", "share": ids_per_expert[e] / ids_per_expert.sum()} for e in range(E)]
             + [{"expert": f"{e:02d}", "what": "tokens of this batch", "share": batch_per_expert[e] / N} for e in range(E)])
print(f"ids per expert: {ids_per_expert.min()}..{ids_per_expert.max()}  tokens of the batch per expert: "
      f"{batch_per_expert.min()}..{batch_per_expert.max()}")
print("example tokens -> expert:")
for ex in demo.hash_examples(ids_N, table, tok.decode, n=10):
    print(f"  id {ex['id']:5d} {ex['text']!r:16s} -> expert {ex['expert']}")
charts.grouped_bar_chart(hash_rows, x="expert", y="share", group="what", x_title="expert",
                         y_title="share (fraction)", group_title="counted", rule_y=1 / E,
                         rule_label="uniform share 1/E", title="HASH: ids vs tokens per expert")"""),
("md", """## RL-R's policy

RL-R's router is a policy π(e | token) = softmax(logits). In training it samples an expert and
learns from REINFORCE (reward: the log-likelihood of the next token, minus a baseline: the mean reward
at the same position in the other sequences plus a small learned value head that predicts, before the
expert is drawn, how well this token will be predicted), plus an entropy bonus and a small balance
term; at evaluation it takes the argmax. With the small initial router weights the
policy starts close to uniform: its entropy is close to the maximum log E.

Two choices of ours make it learn at our small scale (`rlr_router_lr_mult`, `rlr_detach_input`): the
router's weights learn 10 times faster than the rest of the model, without weight decay, and the
REINFORCE, entropy and balance terms train the router alone (no gradient reaches the transformer through
the router's input). Without them the policy stayed near uniform for the whole run: experts drawn at
random in training see random tokens, never specialise, and the model ends worse than dense."""),
("code", """entropy_N, prob_rows = demo.policy_rows(logits_NE, n_tokens=4)
print(f"policy entropy: mean {entropy_N.mean():.3f} nats (min {entropy_N.min():.3f}), maximum log E = {np.log(E):.3f} nats")
p_max_N = np.asarray(jax.nn.softmax(logits_NE, axis=1)).max(axis=1)
print(f"largest expert probability per token: mean {p_max_N.mean():.3f}, max {p_max_N.max():.3f} (uniform: {1 / E:.3f})")
charts.grouped_bar_chart(prob_rows, x="expert", y="probability", group="token", x_title="expert",
                         y_title="policy probability π(e | token)", group_title="token", rule_y=1 / E,
                         rule_label="uniform 1/E", title="RL-R policy for the first four tokens")"""),
("md", """## Capacity and dropped tokens

Experts run as one batched computation over a buffer of C slots each, with
C = ⌈cf · N · K / E⌉ (`moe.capacity`). Tokens beyond an expert's C slots are *dropped*: the layer
outputs zero for them and the residual connection carries them on. The paper used cf = 2; 1.25 is a
common cheaper choice. A balanced router drops (almost) nothing at either; an unbalanced one pays
in dropped tokens."""),
("code", """for cf in (1.25, 2.0):
    print(f"capacity factor {cf}: C = {moe.capacity(N, E, 1, cf)} slots per expert (N/E = {N / E:.0f})")
drop_rows = [{"router": demo.ROUTER_LABELS[k], "cf": f"cf = {cf}", "dropped": 100 * demo.dropped_fraction(e_N, E, cf)}
             for k, e_N in experts.items() for cf in (1.25, 2.0)]
for r in drop_rows:
    print(f"  {r['router']:16s} {r['cf']:10s} dropped {r['dropped']:5.1f}%")
charts.grouped_bar_chart(drop_rows, x="router", y="dropped", group="cf", x_title="router",
                         y_title="tokens dropped (% of the batch)", group_title="capacity factor",
                         y_format=".2f", title="Dropped tokens at capacity factor 1.25 and 2")"""),
("md", """## Summary

- A routed layer's router maps each token's hidden state (or, for HASH, its id) to an expert.
- Plain argmax over a fresh router's logits is badly unbalanced on real text; S-BASE's Sinkhorn
  balances the batch to N/E tokens per expert within a few dozen sweeps; RL-R's sampled policy starts
  near uniform; HASH is balanced over *ids* but follows word frequencies over *tokens*.
- The capacity factor turns imbalance into dropped tokens: C = ⌈cf · N · K / E⌉ slots per expert.

**Read next:** *Training routed language models* trains each router and the dense baseline live;
*Performance* measures what the capacity buffer costs in throughput."""),
]
write_notebook(new_notebook(cells), "chapters/01_routing.ipynb")
