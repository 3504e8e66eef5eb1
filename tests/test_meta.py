"""Meta-gradients: exact (finite differences), backend-independent, and reaching every learned tensor."""
import pytest
import torch

from conftest import tiny_config
from gtn_core.teachers import GTN
from gtn_core.meta import RealData, lr_scheduler, meta_loss, meta_train

BACKENDS = ("func", "higher")
# Every device this machine has: the CUDA cases run where a GPU is present (and are skipped, by name, elsewhere).
DEVICES = ("cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")))


def _real_batch(cfg, n=9, seed=1, device="cpu"):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 8, 8, generator=generator) * 2 - 1
    labels = torch.randint(0, cfg.generator.num_classes, (n,), generator=generator)
    return images.to(device), labels.to(device)


def _loss(gtn, cfg, images, labels):
    # The same learner initialisation for every evaluation, so the loss is a deterministic function.
    return meta_loss(gtn, cfg, images, labels, torch.Generator().manual_seed(7))


def _probes(gtn):
    """A few scalar coordinates of every kind of meta-parameter: teacher weights, inputs, lr, momentum."""
    return [(gtn.generator.dense[0].weight, (0, 5)), (gtn.generator.upsample[1].weight, (1, 2, 0, 1)),
            (gtn.generator.upsample[5].bias, (0,)), (gtn.inputs.noise, (2, 3, 1)),
            (gtn.hparams.log_lr, (1,)), (gtn.hparams.logit_momentum, (2,))]


# (bn_mode, backend, checkpoint_unroll): eval mode scores with the running statistics the unroll accumulated.
UNROLLS = [(bn_mode, backend, False) for bn_mode in ("train", "eval") for backend in BACKENDS] + [
    (bn_mode, "func", True) for bn_mode in ("train", "eval")]


@pytest.mark.parametrize(("bn_mode", "backend", "checkpoint"), UNROLLS)
def test_meta_gradient_matches_central_finite_differences(bn_mode, backend, checkpoint, float64):
    cfg = tiny_config(unroll_backend=backend, checkpoint_unroll=checkpoint, bn_mode=bn_mode, inner_lr_init=0.2)
    gtn = GTN(cfg)
    images, labels = _real_batch(cfg)
    _loss(gtn, cfg, images, labels).backward()
    eps = 1e-6
    for tensor, index in _probes(gtn):
        analytic = tensor.grad[index].item()
        with torch.no_grad():
            tensor[index] += eps
            plus = _loss(gtn, cfg, images, labels).item()
            tensor[index] -= 2 * eps
            minus = _loss(gtn, cfg, images, labels).item()
            tensor[index] += eps
        numeric = (plus - minus) / (2 * eps)
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8), (tuple(tensor.shape), index)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bn_mode", ("train", "eval"))
@pytest.mark.parametrize("variant", ("learned", "random_fixed"))
def test_checkpointed_unroll_gives_the_same_meta_gradients_as_the_plain_one(variant, bn_mode, device, float64):
    grads = {}
    for checkpoint in (False, True):
        cfg = tiny_config(variant=variant, checkpoint_unroll=checkpoint, bn_mode=bn_mode, inner_steps=4)
        gtn = GTN(cfg).to(device)
        loss = _loss(gtn, cfg, *_real_batch(cfg, device=device))
        loss.backward()
        grads[checkpoint] = (loss.item(), {name: p.grad.clone() for name, p in gtn.named_parameters()})
    assert grads[True][0] == pytest.approx(grads[False][0], rel=1e-12)
    assert grads[True][1].keys() == grads[False][1].keys()
    for name, plain in grads[False][1].items():
        assert plain.abs().sum() > 0, name
        torch.testing.assert_close(grads[True][1][name], plain, rtol=1e-9, atol=1e-12)


def test_checkpointing_recomputes_the_teacher_in_the_backward_pass(float64):
    """The memory saving is real: with checkpointing the teacher runs again (per step) during backward."""
    forwards = {}
    for checkpoint in (False, True):
        cfg = tiny_config(checkpoint_unroll=checkpoint)
        gtn = GTN(cfg)
        calls = []
        gtn.generator.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
        loss = _loss(gtn, cfg, *_real_batch(cfg))
        before = len(calls)
        loss.backward()
        forwards[checkpoint] = (before, len(calls) - before)
    assert forwards[False] == (cfg.inner_steps, 0)
    assert forwards[True] == (cfg.inner_steps, cfg.inner_steps)


def test_func_and_higher_backends_give_the_same_meta_gradients(float64):
    grads = {}
    for backend in BACKENDS:
        cfg = tiny_config(unroll_backend=backend)
        gtn = GTN(cfg)
        _loss(gtn, cfg, *_real_batch(cfg)).backward()
        grads[backend] = {name: p.grad.clone() for name, p in gtn.named_parameters()}
    assert grads["func"].keys() == grads["higher"].keys()
    for name in grads["func"]:
        torch.testing.assert_close(grads["func"][name], grads["higher"][name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variant", ["learned", "random_fixed", "random"])
def test_every_meta_parameter_receives_a_nonzero_gradient(variant):
    cfg = tiny_config(variant=variant)
    gtn = GTN(cfg)
    _loss(gtn, cfg, *_real_batch(cfg)).backward()
    names = [name for name, _ in gtn.named_parameters()]
    assert ("inputs.noise" in names) == (variant == "learned")
    for name, param in gtn.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("device", DEVICES)
def test_meta_training_lowers_the_meta_loss_and_reports_each_step(device):
    cfg = tiny_config(outer_steps=40, eval_every=10, teacher_lr=1e-2, inner_lr_init=0.2, real_batch_size=32,
                      device=device)
    generator = torch.Generator().manual_seed(3)
    # A separable toy problem: class k is a bright k-th third of the image.
    labels = torch.randint(0, 3, (300,), generator=generator)
    images = -torch.ones(300, 1, 8, 8)
    for k in range(3):
        images[labels == k, :, :, k * 2:k * 2 + 3] = 1.0
    images += 0.1 * torch.randn(images.shape, generator=generator)
    images, labels = images.to(device), labels.to(device)
    data = RealData(images, labels, images[:60], labels[:60])
    records = list(meta_train(GTN(cfg).to(device), cfg, data))
    assert [r.step for r in records] == list(range(1, 41))
    assert [r.step for r in records if r.test_accuracy is not None] == [10, 20, 30, 40]
    assert all(len(r.inner_lrs) == cfg.inner_steps for r in records)
    early = sum(r.meta_loss for r in records[:10]) / 10
    late = sum(r.meta_loss for r in records[-10:]) / 10
    assert late < early
    accuracies = [r.test_accuracy for r in records if r.test_accuracy is not None]
    assert sum(accuracies) / len(accuracies) > 0.6  # chance is 1/3; a 3-channel learner is noisy per init


@pytest.mark.parametrize("variant", ["learned", "random"])
def test_a_seed_reproduces_a_run_and_another_seed_does_not(variant):
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(64, 1, 8, 8, generator=generator) * 2 - 1, torch.randint(0, 3, (64,), generator=generator)
    data = RealData(images, labels, images[:32], labels[:32])

    def losses(seed):
        cfg = tiny_config(variant=variant, outer_steps=4, eval_every=2, seed=seed)
        return [(r.meta_loss, r.test_accuracy) for r in meta_train(GTN(cfg), cfg, data)]

    assert losses(0) == losses(0)
    assert losses(0) != losses(1)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_schedule_is_constant_or_decays_to_zero_at_the_last_step(schedule):
    cfg = tiny_config(outer_steps=10, lr_schedule=schedule)
    optimizer = torch.optim.Adam(GTN(cfg).param_groups(cfg))
    schedule_ = lr_scheduler(optimizer, cfg)
    initial = [group["lr"] for group in optimizer.param_groups]
    halfway = []
    for step in range(1, cfg.outer_steps + 1):
        optimizer.step()
        schedule_.step()
        if step == cfg.outer_steps // 2:
            halfway = [group["lr"] for group in optimizer.param_groups]
    final = [group["lr"] for group in optimizer.param_groups]
    if schedule == "constant":
        assert halfway == initial and final == initial
    else:
        assert halfway == pytest.approx([lr / 2 for lr in initial])
        assert final == pytest.approx([0.0] * len(initial), abs=1e-12)


def test_an_unknown_learning_rate_schedule_is_rejected_by_name():
    with pytest.raises(ValueError, match="lr_schedule='step'.*constant, cosine"):
        tiny_config(lr_schedule="step")


@pytest.mark.parametrize("variant", ["learned", "random"])
def test_a_trainer_resumed_from_its_state_continues_bit_identically(variant):
    from gtn_core.meta import MetaTrainer

    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(64, 1, 8, 8, generator=generator) * 2 - 1, torch.randint(0, 3, (64,), generator=generator)
    data = RealData(images, labels, images[:32], labels[:32])
    cfg = tiny_config(variant=variant, outer_steps=6, eval_every=2)
    whole = MetaTrainer(GTN(cfg), cfg, data)
    uninterrupted = [(r.step, r.meta_loss, r.test_accuracy, r.inner_lrs) for r in whole.records()]

    first = MetaTrainer(GTN(cfg), cfg, data)
    records = first.records()
    before = [(r.step, r.meta_loss, r.test_accuracy, r.inner_lrs) for r in (next(records) for _ in range(3))]
    state = first.state_dict()
    resumed = MetaTrainer(GTN(cfg), cfg, data)  # a fresh process would build exactly this, then load the state
    resumed.load_state_dict(state)
    after = [(r.step, r.meta_loss, r.test_accuracy, r.inner_lrs) for r in resumed.records()]
    assert before + after == uninterrupted
    for name, value in whole.teacher.state_dict().items():
        assert torch.equal(resumed.teacher.state_dict()[name], value), name
    with pytest.raises(ValueError, match="step 9: expected a step in 0..6"):
        MetaTrainer(GTN(cfg), cfg, data).load_state_dict({**state, "step": 9})


def test_a_meta_batch_follows_the_mean_meta_gradient_of_its_learners(float64):
    from gtn_core.meta import meta_gradient
    from gtn_core.seeds import learner_stream, seeded_generator

    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(64, 1, 8, 8, generator=generator) * 2 - 1, torch.randint(0, 3, (64,), generator=generator)
    data = RealData(images, labels, images[:32], labels[:32])
    cfg = tiny_config(meta_batch=2)
    gtn = GTN(cfg)

    def streams(*members):
        return [seeded_generator(cfg.seed, stream=learner_stream(m)) for m in members]

    singles = []
    for member in (0, 1):
        loss = meta_gradient(gtn, cfg, data, streams(member))
        singles.append((loss, {name: p.grad.clone() for name, p in gtn.named_parameters()}))
    mean_loss = meta_gradient(gtn, cfg, data, streams(0, 1))
    assert mean_loss == pytest.approx((singles[0][0] + singles[1][0]) / 2, rel=1e-12)
    assert singles[0][0] != singles[1][0]  # two learners, two initialisations and real batches
    for name, param in gtn.named_parameters():
        torch.testing.assert_close(param.grad, (singles[0][1][name] + singles[1][1][name]) / 2, rtol=1e-10,
                                   atol=1e-14)


def test_meta_batch_one_is_the_single_learner_run_and_meta_batch_resumes_too():
    from gtn_core.meta import MetaTrainer

    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(64, 1, 8, 8, generator=generator) * 2 - 1, torch.randint(0, 3, (64,), generator=generator)
    data = RealData(images, labels, images[:32], labels[:32])
    cfg = tiny_config(outer_steps=4, eval_every=2)
    assert [r.meta_loss for r in meta_train(GTN(cfg), cfg, data)] == \
        [r.meta_loss for r in meta_train(GTN(cfg), tiny_config(outer_steps=4, eval_every=2, meta_batch=1), data)]
    batched = tiny_config(outer_steps=4, eval_every=2, meta_batch=3)
    whole = [r.meta_loss for r in MetaTrainer(GTN(batched), batched, data).records()]
    first = MetaTrainer(GTN(batched), batched, data)
    records = first.records()
    before = [next(records).meta_loss for _ in range(2)]
    resumed = MetaTrainer(GTN(batched), batched, data)
    resumed.load_state_dict(first.state_dict())
    assert before + [r.meta_loss for r in resumed.records()] == whole
    with pytest.raises(ValueError, match="meta_batch=0"):
        tiny_config(meta_batch=0)
