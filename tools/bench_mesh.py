"""Step time of one training step on 1 device vs 8 simulated CPU devices (meshes 8x1, 1x8, 2x4), with the
global queue (dispatch_groups=1) and with all-to-all dispatch (dispatch_groups=8); writes JSON to data/bench/.

Run:  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu .venv/bin/python tools/bench_mesh.py
Simulated devices share the host's cores, so this measures overheads and checks equal losses, not speed-ups.
"""

import datetime
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from routing_laws import model as model_lib
from routing_laws import parallel
from routing_laws import train as train_lib
from routing_laws.config import RouterConfig, TrainConfig, model_config
from routing_laws.io_utils import atomic_write_json, provenance, repo_root


def main(size: str = "100k", experts: int = 16, batch: int = 32, steps: int = 10) -> None:
    if jax.device_count() != 8:
        sys.exit("needs 8 devices: set XLA_FLAGS=--xla_force_host_platform_device_count=8 before starting")
    rows = []
    tokens = np.random.default_rng(0).integers(0, 2048, (batch, 129)).astype(np.int32)
    for groups in (1, 8):
        mc = model_config(size, router=RouterConfig(kind="sbase", n_experts=experts, dispatch_groups=groups))
        tc = TrainConfig(tokens=1 << 20, batch_size=batch)
        loss_fn, opt, net = train_lib.make_loss_fn(mc, jnp.float32), train_lib.optimizer(tc, 256), model_lib.build(mc)
        params = net.init(jax.random.PRNGKey(0), jnp.asarray(tokens[:, :-1]), is_training=True)

        def step(p, s, b, rng):
            (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(p, rng, b, True)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s, loss

        for mesh_name in (None, "8x1", "1x8", "2x4"):
            if mesh_name is None:
                f, p, s, b = jax.jit(step), params, opt.init(params), jnp.asarray(tokens)
            else:
                mesh = parallel.make_mesh(*parallel.parse_mesh(mesh_name))
                p, s, f, _, to_batch = parallel.shard_training(mesh, mc, batch, params, opt.init(params), step, lambda *a: a)
                b = to_batch(tokens)
            p, s, loss = f(p, s, b, jax.random.PRNGKey(0))
            first = float(loss)
            t0 = time.perf_counter()
            for i in range(steps):
                p, s, loss = f(p, s, b, jax.random.PRNGKey(i + 1))
            jax.block_until_ready(loss)
            ms = (time.perf_counter() - t0) / steps * 1e3
            rows.append({"dispatch_groups": groups, "mesh": mesh_name or "1 device", "ms_per_step": round(ms, 1),
                         "first_step_loss": first})
            print(rows[-1], flush=True)
    out = repo_root() / "data" / "bench" / f"mesh-steptime-cpu8-{datetime.date.today():%Y%m%d}.json"
    atomic_write_json(out, {"what": __doc__.strip().splitlines()[0], "size": size, "experts": experts, "router": "sbase",
                            "batch": [batch, 128], "timed_steps": steps, "rows": rows, "provenance": provenance()})
    print("wrote", out)


if __name__ == "__main__":
    main()
