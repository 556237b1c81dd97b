"""Optax optimiser from an ``OptimConfig``: optional global-norm clipping, then adam / adamw /
sgd driven by a learning-rate schedule (constant or cosine, after a linear warm-up)."""

from __future__ import annotations


def schedule(cfg, total_steps: int):
    import optax

    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.final_lr_ratio)
    else:
        main = optax.constant_schedule(cfg.lr)
    if cfg.warmup_steps:
        warm = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
        return optax.join_schedules([warm, main], [cfg.warmup_steps])
    return main


def build(cfg, total_steps: int):
    import optax

    lr = schedule(cfg, total_steps)
    if cfg.kind == "adam":
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
    elif cfg.kind == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
    else:
        opt = optax.sgd(lr, momentum=cfg.momentum or None)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt) if cfg.grad_clip else opt


def for_experiment(exp, total_steps: int):
    """The transformation the trainer applies: ``optim`` as wrapped by the objective (which may
    give parameter groups of its own their own optimiser, e.g. an adversarial discriminator).
    Its ``update`` takes the training step as the extra argument ``step`` (optax's
    ``GradientTransformationExtraArgs``; transformations that do not use it ignore it)."""
    import optax

    return optax.with_extra_args_support(exp.objective.optimizer(build(exp.cfg.optim, total_steps), exp.cfg.optim, total_steps))
