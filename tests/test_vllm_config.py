"""vLLM launch settings (deploy/vllm.py, deploy/vllm_launch.py): construction and validation only; vllm is never
imported (these machines have no GPU)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from deploy.vllm import (
    SpeculativeSettings,
    VLLMConfigError,
    VLLMSettings,
    build_llm_kwargs,
    build_serve_args,
    read_checkpoint_quantization,
    shell_command,
)
from deploy.vllm_launch import main as launch_main


def checkpoint(tmp_path, name: str, quant: dict | None = None):
    d = tmp_path / name
    d.mkdir()
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    if quant is not None:
        cfg["quantization_config"] = quant
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize(
    ("quant_method", "expected"),
    [("gptq", "gptq"), ("awq", "awq"), ("compressed-tensors", "compressed-tensors"), ("fp8", "fp8")],
)
def test_quantization_detected_from_config_json(tmp_path, quant_method, expected):
    ckpt = checkpoint(tmp_path, "m", {"quant_method": quant_method, "bits": 4})
    assert read_checkpoint_quantization(ckpt) == expected
    s = VLLMSettings(model=str(ckpt))
    assert build_llm_kwargs(s)["quantization"] == expected
    assert flag(build_serve_args(s), "--quantization") == expected


def test_unquantized_and_hub_models_leave_quantization_out(tmp_path):
    plain = checkpoint(tmp_path, "plain")
    assert read_checkpoint_quantization(plain) is None
    assert "quantization" not in build_llm_kwargs(VLLMSettings(model=str(plain)))
    hub = VLLMSettings(model="org/doctor-7b")  # not local: vLLM reads the hub config itself
    assert "--quantization" not in build_serve_args(hub)


def test_explicit_quantization_must_agree_with_the_checkpoint(tmp_path):
    ckpt = checkpoint(tmp_path, "g", {"quant_method": "gptq"})
    assert (
        build_llm_kwargs(VLLMSettings(model=str(ckpt), quantization="gptq_marlin"))["quantization"]
        == "gptq_marlin"
    )
    with pytest.raises(VLLMConfigError, match="says the checkpoint is 'gptq'"):
        VLLMSettings(model=str(ckpt), quantization="awq")
    with pytest.raises(VLLMConfigError, match="quantization 'int3' is unknown"):
        VLLMSettings(model="org/m", quantization="int3")
    odd = checkpoint(tmp_path, "odd", {"quant_method": "hqq"})
    with pytest.raises(VLLMConfigError, match="'hqq'"):
        VLLMSettings(model=str(odd))
    assert "quantization" not in build_llm_kwargs(VLLMSettings(model=str(odd), quantization=None))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(VLLMConfigError, match="cannot read it as JSON"):
        read_checkpoint_quantization(broken)


def test_full_recipe_serve_args_and_llm_kwargs(tmp_path):
    target = checkpoint(tmp_path, "doctor-w4a16", {"quant_method": "compressed-tensors"})
    head = checkpoint(tmp_path, "doctor-eagle3")
    s = VLLMSettings(
        model=str(target),
        kv_cache_dtype="fp8",
        speculative=SpeculativeSettings("eagle3", model=str(head), num_speculative_tokens=3),
        tensor_parallel_size=2,
        max_model_len=8192,
        gpu_memory_utilization=0.85,
        served_model_name="doctor",
        port=8001,
    )
    argv = build_serve_args(s)
    assert argv[:3] == ["vllm", "serve", str(target)]
    assert flag(argv, "--quantization") == "compressed-tensors"
    assert flag(argv, "--kv-cache-dtype") == "fp8"
    assert flag(argv, "--tensor-parallel-size") == "2"
    assert flag(argv, "--max-model-len") == "8192"
    assert flag(argv, "--gpu-memory-utilization") == "0.85"
    assert flag(argv, "--served-model-name") == "doctor"
    assert flag(argv, "--port") == "8001" and flag(argv, "--host") == "127.0.0.1"
    spec = json.loads(flag(argv, "--speculative-config"))
    assert spec == {"method": "eagle3", "model": str(head), "num_speculative_tokens": 3}
    kw = build_llm_kwargs(s)
    assert kw == {
        "model": str(target),
        "tensor_parallel_size": 2,
        "quantization": "compressed-tensors",
        "kv_cache_dtype": "fp8",
        "max_model_len": 8192,
        "gpu_memory_utilization": 0.85,
        "speculative_config": spec,
    }
    assert shlex.split(shell_command(s)) == argv  # the printed line round-trips through a shell


def test_speculative_methods():
    d = SpeculativeSettings("draft_model", model="org/doctor-0.5b", num_speculative_tokens=5).to_dict()
    assert d == {"method": "draft_model", "model": "org/doctor-0.5b", "num_speculative_tokens": 5}
    n = SpeculativeSettings(
        "ngram", num_speculative_tokens=4, prompt_lookup_min=2, prompt_lookup_max=5
    ).to_dict()
    assert n == {
        "method": "ngram",
        "num_speculative_tokens": 4,
        "prompt_lookup_min": 2,
        "prompt_lookup_max": 5,
    }
    e = SpeculativeSettings("eagle", model="org/head", draft_tensor_parallel_size=1).to_dict()
    assert e["draft_tensor_parallel_size"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "eagle3"}, "needs an EAGLE head"),
        ({"method": "draft_model"}, "needs a draft model"),
        ({"method": "medusa2", "model": "x"}, "unknown; expected one of"),
        ({"method": "ngram", "model": "org/x"}, "takes no model"),
        ({"method": "ngram", "num_speculative_tokens": 0}, "num_speculative_tokens"),
        (
            {"method": "ngram", "prompt_lookup_min": 5, "prompt_lookup_max": 2},
            "larger than prompt_lookup_max",
        ),
        ({"method": "eagle3", "model": "org/h", "prompt_lookup_max": 3}, "ngram' only"),
        ({"method": "eagle3", "model": "/no/such/head"}, "does not exist"),
        ({"method": "ngram", "draft_tensor_parallel_size": 1}, "not 'ngram'"),
    ],
)
def test_speculative_validation(kwargs, message):
    with pytest.raises(VLLMConfigError, match=message):
        SpeculativeSettings(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kv_cache_dtype": "int4"}, "kv_cache_dtype 'int4'"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"max_model_len": 0}, "max_model_len"),
        ({"gpu_memory_utilization": 1.5}, r"\(0, 1\]"),
        ({"dtype": "int8"}, "dtype 'int8'"),
        ({"port": 0}, "port"),
        ({"model": "/no/such/model"}, "model path '/no/such/model' does not exist"),
        (
            {
                "tensor_parallel_size": 1,
                "speculative": SpeculativeSettings("eagle", model="o/h", draft_tensor_parallel_size=2),
            },
            "cannot exceed",
        ),
    ],
)
def test_settings_validation(kwargs, message):
    with pytest.raises(VLLMConfigError, match=message):
        VLLMSettings(**{"model": "org/doctor", **kwargs})


def test_launcher_prints_command_kwargs_and_refuses_bad_input(tmp_path, capsys):
    target = checkpoint(tmp_path, "t", {"quant_method": "awq"})
    assert (
        launch_main(
            ["--model", str(target), "--kv-cache-dtype", "fp8", "--spec", "ngram", "--prompt-lookup-max", "4"]
        )
        == 0
    )
    line = capsys.readouterr().out.strip()
    argv = shlex.split(line)
    assert argv[:3] == ["vllm", "serve", str(target)]
    assert flag(argv, "--quantization") == "awq" and flag(argv, "--kv-cache-dtype") == "fp8"
    assert json.loads(flag(argv, "--speculative-config"))["prompt_lookup_max"] == 4
    assert launch_main(["--model", str(target), "--quant", "none", "--llm-kwargs"]) == 0
    kw = json.loads(capsys.readouterr().out)
    assert kw["model"] == str(target) and "quantization" not in kw
    assert launch_main(["--model", str(target), "--spec", "eagle3"]) == 2
    assert "needs an EAGLE head" in capsys.readouterr().err
    assert launch_main(["--model", str(target), "--draft", "x"]) == 2
    assert "need --spec" in capsys.readouterr().err


def test_launcher_run_without_vllm_installed_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert launch_main(["--model", "org/doctor", "--run"]) == 2
    assert "not installed" in capsys.readouterr().err


def test_no_vllm_import():
    code = "import sys, deploy.vllm, deploy.vllm_launch; print('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
