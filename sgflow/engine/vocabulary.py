"""A model's vocabulary as xgrammar needs it, read from the GGUF without its weights.

The API and ``sgflow check`` compile constraints against the vocabulary too (a schema can pass
every static check and still take minutes to compile against 49k tokens); they need the
tokens, not the model. ``vocab_only`` loads the GGUF's metadata and tokenizer in a fraction
of the memory of the model.
"""

from __future__ import annotations

import ctypes
import functools

import llama_cpp as llama
import xgrammar as xgr

from sgflow.engine.model import _quiet_llama, default_model_path

__all__ = ["tokenizer_info"]


@functools.lru_cache(maxsize=4)
def tokenizer_info(model_path: str | None = None) -> xgr.TokenizerInfo:
    """xgrammar's view of the GGUF at ``model_path`` (default: the embedded model): every
    token's raw bytes (control tokens empty) and the end-of-generation ids."""
    path = model_path or default_model_path()
    _quiet_llama(False)
    llama.llama_backend_init()
    params = llama.llama_model_default_params()
    params.vocab_only = True
    model = llama.llama_model_load_from_file(path.encode(), params)
    if not model:
        raise FileNotFoundError(f"could not read a GGUF vocabulary from {path}")
    try:
        vocab = llama.llama_model_get_vocab(model)
        n_vocab = llama.llama_vocab_n_tokens(vocab)
        buf = ctypes.create_string_buffer(256)
        tokens: list[bytes] = []
        for token in range(n_vocab):
            n = llama.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
            if n < 0:
                big = ctypes.create_string_buffer(-n)
                n = llama.llama_token_to_piece(vocab, token, big, len(big), 0, False)
                tokens.append(big.raw[:n])
            else:
                tokens.append(buf.raw[:n])
        stops = [t for t in range(n_vocab) if llama.llama_vocab_is_eog(vocab, t)]
    finally:
        llama.llama_model_free(model)
    return xgr.TokenizerInfo(tokens, xgr.VocabType.RAW, vocab_size=n_vocab, stop_token_ids=stops)
