# The sgflow image: API, workers, Flower and the CPU engine (llama.cpp). `docker build -t sgflow .`
FROM python:3.11-slim

# llama-cpp-python builds from source: a compiler, CMake and git
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*

# a portable CPU build (AVX2/FMA, no AMX), the same flags as the Makefile
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app
# torch first, from the CPU index: the default index pulls CUDA
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY sgflow ./sgflow
RUN pip install . flower

EXPOSE 8000 30000 5555
CMD ["sgflow", "serve", "--host", "0.0.0.0"]
