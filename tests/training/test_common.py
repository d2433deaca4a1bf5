"""The CPU twins of the CUDA-only branches (training/common.py, search/trial.py, config): issue 14 faults
1 (device from the study's resources), 4 (compiler reset, no silent eager fallback), 7 (memory released,
OOM recorded as such), 10 (one GPU per trial at most; the autocast dtype from the GPU's capability)."""
from __future__ import annotations

import pydantic
import pytest
import torch

from sksearch.config import Resources
from sksearch.errors import UserError, from_validation_error
from sksearch.search.trial import error_fields
from sksearch.training import common

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def test_a_trial_without_a_gpu_share_trains_on_the_cpu_even_where_cuda_is_visible(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # pretend a GPU is visible
    assert common.trial_device(0) == CPU
    assert common.trial_device(0.25) == CUDA and common.trial_device(1) == CUDA


def test_a_gpu_share_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available"):
        common.trial_device(0.5)


def test_more_than_one_gpu_per_trial_is_refused_at_load():
    assert Resources(gpu=0.25).gpu == 0.25 and Resources(gpu=1).gpu == 1
    with pytest.raises(pydantic.ValidationError) as info:
        Resources(gpu=2)
    line = str(from_validation_error(info.value, file="study.yaml", prefix="tune.resources_per_trial"))
    assert "tune.resources_per_trial.gpu" in line and "one GPU" in line


@pytest.mark.parametrize("capability, dtype", [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                               ((7, 5), torch.float16), ((7, 0), torch.float16), ((6, 1), None)])
def test_autocast_dtype_follows_the_gpu_generation(capability, dtype):
    assert common.amp_dtype(CUDA, True, capability) == dtype
    assert common.amp_dtype(CUDA, False, capability) is None
    assert common.amp_dtype(CPU, True) is None  # CPU trials stay fp32


def test_fp16_gets_a_loss_scaler_and_the_others_a_pass_through():
    assert common.grad_scaler(CPU, None).is_enabled() is False
    assert common.grad_scaler(CPU, torch.bfloat16).is_enabled() is False
    # the pass-through scaler steps the optimizer exactly as optimizer.step() would
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=0.5)
    scaler = common.grad_scaler(CPU, None)
    scaler.scale((p * p).sum()).backward()
    scaler.step(opt)
    scaler.update()
    assert p.tolist() == [0.0, 0.0]


def test_cpu_autocast_bf16_step_keeps_channels_last():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=common.memory_format(True))
    with common.autocast(CPU, torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    with common.autocast(CPU, None):
        assert conv(x).dtype == torch.float32


def test_memory_cap_and_release_are_no_ops_on_cpu():
    assert common.cap_memory(CPU, 0.5) is None
    common.release_memory(CPU)  # gc only
    common.setup_backend(CPU)
    common.sync(CPU)


def test_out_of_memory_is_reported_with_its_own_kind():
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert common.is_oom(oom) and common.is_oom(RuntimeError("CUDA error: out of memory"))
    assert not common.is_oom(ValueError("out of memory")) and not common.is_oom(RuntimeError("shape mismatch"))
    fields = error_fields(oom, 0.25)
    assert fields["error_kind"] == "oom"
    assert fields["error"].startswith("out of memory") and "gpu = 0.25" in fields["error"]
    assert error_fields(RuntimeError("boom")) == {"error": "RuntimeError: boom", "error_kind": "crash"}


def test_compile_resets_and_refuses_a_silent_eager_fallback():
    import torch._dynamo

    model = torch.nn.Linear(2, 2)
    assert common.compile_model(model, False) is model
    compiled = common.compile_model(model, "reduce-overhead")
    assert compiled is not model and common.bare(compiled) is model
    assert torch._dynamo.config.fail_on_recompile_limit_hit is True
    assert [common.warmup_steps_for(m) for m in (False, True, "default", "reduce-overhead")] == [0, 1, 1, 3]

    f = torch.compile(lambda x: x * 2, backend="eager")
    graphs = lambda: torch._dynamo.utils.counters["stats"]["unique_graphs"]  # noqa: E731
    f(torch.ones(1))
    cached = graphs()
    f(torch.ones(1))
    assert graphs() == cached  # compiled once, then reused
    common.reset_compiler()  # a reused worker's next trial starts with an empty cache: it compiles afresh
    f(torch.ones(1))
    assert graphs() == cached + 1
    common.mark_step(False)  # eager: nothing to tell CUDA graphs


def test_full_run_step_rule_and_warm_up():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    steps = 4  # per epoch; lr x 0.5 every 2 epochs, warm-up over the first epoch
    sched = common.make_schedule(opt, kind="step", total_steps=6 * steps, warmup_steps=steps,
                                 milestones=common.every_k_epochs(2, 6, steps), gamma=0.5)
    lrs = []
    for _ in range(6 * steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4:8] == pytest.approx([1.0] * 4) and lrs[8:16] == pytest.approx([0.5] * 8)
    assert lrs[16:] == pytest.approx([0.25] * 8)
