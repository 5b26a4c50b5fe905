"""Device resolution: CPU by default with an explicit thread count; precision and MFU peak recorded."""

from __future__ import annotations

import pytest
import torch

from trainers import device


def test_auto_resolves_to_what_is_present_and_sets_threads():
    rt = device.resolve("auto", dtype="auto", threads=1)
    assert rt.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert rt.dtype == ("bf16" if torch.cuda.is_available() else "fp32")
    assert torch.get_num_threads() == 1


def test_cpu_peak_default_and_bf16_autocast(monkeypatch):
    monkeypatch.delenv(device.PEAK_FLOPS_ENV, raising=False)
    rt = device.resolve("cpu", dtype="bf16", threads=1)
    # one thread is compared with one core's peak, not the whole machine's
    assert rt.peak_flops == device.CPU_PEAK_FLOPS_PER_THREAD and rt.peak_source.startswith("CPU default")
    with rt.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_value_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        device.resolve("cuda", dtype="auto", threads=1)


def test_bad_device_threads_or_peak_are_value_errors(monkeypatch):
    with pytest.raises(ValueError, match="unsupported"):
        device.resolve("mps", dtype="auto", threads=1)
    with pytest.raises(ValueError, match="unsupported"):
        device.resolve("gpu", dtype="auto", threads=1)
    with pytest.raises(ValueError, match="threads=0"):
        device.resolve("cpu", dtype="auto", threads=0)
    monkeypatch.setenv(device.PEAK_FLOPS_ENV, "fast")
    with pytest.raises(ValueError, match="ORCH_PEAK_FLOPS"):
        device.resolve("cpu", dtype="auto", threads=1)


def test_out_of_memory_is_recognised_in_its_forms():
    assert device.is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert device.is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"))
    assert device.is_oom(MemoryError())
    assert not device.is_oom(RuntimeError("shape mismatch"))


@pytest.mark.parametrize("name, bf16", [
    ("NVIDIA H100 80GB HBM3", 989e12),  # SXM5
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA H200 NVL", 835e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A100 80GB PCIe", 312e12),
    ("NVIDIA L40S", 362e12),
    ("NVIDIA L40", 181e12),
    ("NVIDIA L4", 121e12),
])
def test_datasheet_peaks_are_dense_and_match_the_most_specific_name(name, bf16):
    assert device.datasheet_peak(name, "bf16")[0] == bf16
    assert device.datasheet_peak(name, "fp32")[0] == bf16 / 2  # TF32
    peak, source = device.datasheet_peak("Some Future GPU", "bf16")
    assert peak == device.UNKNOWN_GPU_PEAK and "unknown GPU" in source


def test_gpu_memory_share_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(device.GPU_MEMORY_FRACTION_ENV, raising=False)
    assert device.memory_fraction() == 1.0
    monkeypatch.setenv(device.GPU_MEMORY_FRACTION_ENV, "0.25")
    assert device.memory_fraction() == 0.25
    for bad in ("0", "1.5", "quarter"):
        monkeypatch.setenv(device.GPU_MEMORY_FRACTION_ENV, bad)
        with pytest.raises(ValueError, match="ORCH_GPU_MEMORY_FRACTION"):
            device.memory_fraction()
    assert device.is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)"))
