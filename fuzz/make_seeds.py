#!/usr/bin/python3
"""Writes the seed corpora fuzz/corpus/<target>/ (small, valid and near-valid inputs).

    /usr/bin/python3 fuzz/make_seeds.py

Deterministic: rerunning it rewrites the same bytes (zip timestamps fixed)."""
import io
import json
import os
import struct
import zipfile

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SEP = b"|PM|"
MEMBERS = ["hidden_states.npy", "token_ids.npy", "entropy.npy", "top1.npy", "margin.npy", "surprisal.npy",
           "logits.npy", "metadata.json"]


def npy(a, version=None):
    b = io.BytesIO()
    if version is None:
        np.save(b, a)
    else:
        np.lib.format.write_array(b, a, version=version)
    return b.getvalue()


def npz(members, compress=False):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            z.writestr(zi, data)
    return b.getvalue()


def reheader(b, old, new):
    """Replaces text in a version-1 header, keeping the header length (padding absorbs it)."""
    hl = b[8] | (b[9] << 8)
    h = b[10:10 + hl].replace(old, new)
    body = h.rstrip(b" \n")
    h = body + b" " * (hl - len(body) - 1) + b"\n"
    assert len(h) == hl
    return b[:10] + h + b[10 + hl:]


# GGUF (v3, little-endian), written by hand per ggml's docs/gguf.md: header, key/value pairs,
# tensor infos, padding to the alignment, tensor data (each tensor padded to the alignment).
GGUF_U32, GGUF_I32, GGUF_F32, GGUF_STR, GGUF_ARR = 4, 5, 6, 8, 9
GGML_F32, GGML_F16 = 0, 1


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, typ, val):
    out = gguf_str(key) + struct.pack("<I", typ)
    if typ == GGUF_STR:
        return out + gguf_str(val)
    if typ == GGUF_ARR:
        et, items = val
        return out + struct.pack("<IQ", et, len(items)) + b"".join(struct.pack("<i", x) for x in items)
    return out + struct.pack({GGUF_U32: "<I", GGUF_I32: "<i", GGUF_F32: "<f"}[typ], val)


def gguf(kvs, tensors, align=32, version=3):
    """kvs: [(key, type, value)]; tensors: [(name, shape, ggml type, raw bytes)]."""
    pad = lambda n: (n + align - 1) // align * align
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(gguf_kv(*kv) for kv in kvs)
    data, infos = b"", b""
    for name, shape, typ, raw in tensors:
        infos += gguf_str(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<q", n) for n in shape)
        infos += struct.pack("<IQ", typ, len(data))
        data += raw + b"\0" * (pad(len(raw)) - len(raw))
    meta = head + infos
    return meta + b"\0" * (pad(len(meta)) - len(meta)) + data


def f32(values):
    return struct.pack(f"<{len(values)}f", *values)


def control_vectors():
    """Vectors for the harness's model (fuzz/harness.hpp kCvecModel: llama, 8 blocks, n_embd 4)."""
    d = lambda k: f32([0.25 * k, -0.5, 1.0, float(k)])
    hint = [("general.architecture", GGUF_STR, "controlvector"), ("controlvector.model_hint", GGUF_STR, "llama")]
    ours = hint + [("controlvector.layer_count", GGUF_I32, 3), ("phasemap.n_embd", GGUF_U32, 4),
                   ("phasemap.n_layer", GGUF_U32, 8), ("phasemap.model_sha256", GGUF_STR, "ab" * 32),
                   ("phasemap.method", GGUF_STR, "mean_diff"), ("phasemap.layers", GGUF_ARR, (GGUF_I32, [1, 2, 3]))]
    three = [(f"direction.{k}", [4], GGML_F32, d(k)) for k in (1, 2, 3)]
    put("control_vector", "phasemap.gguf", gguf(ours, three))
    put("control_vector", "repeng.gguf", gguf(hint + [("controlvector.layer_count", GGUF_I32, 2)],
                                               [("direction.1", [4], GGML_F32, d(1)), ("direction.7", [4], GGML_F32, d(7))]))
    put("control_vector", "i32_keys_align64.gguf",
        gguf([("general.alignment", GGUF_U32, 64), ("phasemap.n_layer", GGUF_I32, 8), ("phasemap.n_embd", GGUF_I32, 4)],
             [("direction.3", [4, 1], GGML_F32, d(3))], align=64))
    # Near misses: each must be rejected by the reader or by check_control_vector.
    put("control_vector", "direction0.gguf", gguf(hint, [("direction.0", [4], GGML_F32, d(0))]))
    put("control_vector", "bad_name.gguf", gguf(hint, [("direction.1x", [4], GGML_F32, d(1))]))
    put("control_vector", "f16.gguf", gguf(hint, [("direction.1", [4], GGML_F16, b"\0\x3c" * 4)]))
    put("control_vector", "two_dims.gguf", gguf(hint, [("direction.1", [2, 2], GGML_F32, d(1))]))
    put("control_vector", "dim_mismatch.gguf",
        gguf(hint, [("direction.1", [4], GGML_F32, d(1)), ("direction.2", [3], GGML_F32, f32([1, 2, 3]))]))
    put("control_vector", "declared_mismatch.gguf", gguf([("phasemap.n_embd", GGUF_U32, 5)], three))
    put("control_vector", "other_model.gguf", gguf([("controlvector.model_hint", GGUF_STR, "qwen2")], three))
    put("control_vector", "past_last_block.gguf", gguf(hint, [("direction.8", [4], GGML_F32, d(8))]))
    put("control_vector", "nan.gguf", gguf(hint, [("direction.2", [4], GGML_F32, f32([0, float("nan"), 0, 0]))]))
    put("control_vector", "no_tensor.gguf", gguf(ours, []))
    put("control_vector", "truncated.gguf", gguf(ours, three)[:-9])
    put("control_vector", "version1.gguf", gguf(hint, three, version=1))
    put("control_vector", "not_gguf.gguf", b"GGUX\3\0\0\0 not a gguf file")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    rng = np.random.default_rng(7)
    T, L, D, V = 3, 2, 4, 5
    hs = rng.standard_normal((T, L, D)).astype(np.float32)
    ids = np.array([1, 4, 2], dtype=np.int64)
    ent = rng.random(T)
    logits = rng.standard_normal((T, V)).astype(np.float32)
    meta = {"phasemap_version": "0.1.0", "layers": [{"label": "hf:1"}, {"label": "hf:2"}], "tokens": ["a", "b", "c"]}

    # npy: every accepted dtype, header versions 1/2, edge shapes, near-misses.
    arrays = {
        "f4_3d": hs, "f2_2d": logits.astype(np.float16), "f8_1d": ent, "i8_1d": ids, "i4_1d": ids.astype(np.int32),
        "i1": np.array([-1, 2], np.int8), "u1": np.array([255, 0], np.uint8), "u2": np.array([65535], np.uint16),
        "u8": np.array([2**63], np.uint64), "scalar": np.float32(1.5), "empty": np.zeros((0, 3), np.float32),
        "fortran": np.asfortranarray(np.ones((2, 3), np.float32)), "big_endian": np.ones(2, ">f4"),
    }
    for k, a in arrays.items():
        put("npy", k + ".npy", npy(a))
    put("npy", "v2_header.npy", npy(hs, version=(2, 0)))
    put("npy", "truncated.npy", npy(hs)[:-5])
    put("npy", "bad_dtype.npy", npy(ids).replace(b"'<i8'", b"'<i0'"))
    put("npy", "huge_shape.npy", reheader(npy(ent), b"(3,)", b"(99999999999999999999999,)"))
    put("npy", "overflow_shape.npy", reheader(npy(ent), b"(3,)", b"(4294967296, 4294967296, 4294967296,)"))
    put("npy", "zero_item.npy", reheader(npy(ent), b"'<f8'", b"'<f0'"))

    # npz: numpy's own files (stored and deflated), a phasemap-layout run, garbage.
    base = {"hidden_states.npy": npy(hs), "token_ids.npy": npy(ids), "logits.npy": npy(logits)}
    put("npz", "savez.npz", npz(base))
    put("npz", "savez_compressed.npz", npz(base, compress=True))
    run = dict(base)
    run.update({"entropy.npy": npy(ent), "top1.npy": npy(ent), "margin.npy": npy(ent), "surprisal.npy": npy(ent),
                "metadata.json": json.dumps(meta)})
    put("npz", "phasemap_run.npz", npz(run))
    put("npz", "truncated.npz", npz(base)[:200])
    put("npz", "not_zip.npz", b"PK\x03\x04 not really a zip")

    # layers: first byte = n_layer + 2, then the spec.
    for i, spec in enumerate(["all", "none", "hf:all", "block:all", "hf:0-3,block:2", "hf:-1", "hf:last",
                              "block:last, hf:1", "hf:3-1", "hf:", "mlp:1", "hf:99", ",", "hf:1-", "hf:-"]):
        put("layers", f"spec{i:02d}", bytes([2 + (4 if i % 2 else 12)]) + spec.encode())

    # run_file: members in MEMBERS order joined by SEP (empty chunk = member absent).
    def runfile(parts):
        return SEP.join(parts.get(m, b"") for m in MEMBERS)
    full = {"hidden_states.npy": npy(hs), "token_ids.npy": npy(ids), "entropy.npy": npy(ent), "top1.npy": npy(ent),
            "margin.npy": npy(ent), "surprisal.npy": npy(ent), "logits.npy": npy(logits),
            "metadata.json": json.dumps(meta).encode()}
    put("run_file", "full", runfile(full))
    put("run_file", "limen_layout", runfile({k: full[k] for k in ("hidden_states.npy", "token_ids.npy", "logits.npy")}))
    put("run_file", "states_only_f16", runfile({"hidden_states.npy": npy(hs.astype(np.float16))}))
    put("run_file", "bad_rank", runfile({"hidden_states.npy": npy(hs[0])}))
    put("run_file", "ids_mismatch", runfile({"hidden_states.npy": npy(hs), "token_ids.npy": npy(ids[:2])}))
    put("run_file", "meta_odd", runfile({"hidden_states.npy": npy(hs),
                                         "metadata.json": b'{"layers":[1,{"label":2}],"tokens":[1,"x",null]}'}))

    control_vectors()


if __name__ == "__main__":
    main()
