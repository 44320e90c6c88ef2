#include "support/ref_llama.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>

namespace pmtest {

namespace {

// y = W x for a ggml weight of shape {n_in, n_out} (+ bias when present).
std::vector<double> matvec(const GgufTensor& w, std::span<const double> x, const std::optional<GgufTensor>& b = std::nullopt) {
    const int64_t n_in = w.ne[0], n_out = w.ne[1];
    if (static_cast<int64_t>(x.size()) != n_in)
        throw std::logic_error("matvec: '" + w.name + "' expects " + std::to_string(n_in) + " inputs, got " + std::to_string(x.size()));
    std::vector<double> y(static_cast<size_t>(n_out));
    for (int64_t o = 0; o < n_out; ++o) {
        const double* r = w.row(o);
        double s = 0.0;
        for (int64_t i = 0; i < n_in; ++i) s += r[i] * x[static_cast<size_t>(i)];
        y[static_cast<size_t>(o)] = s + (b ? b->data[static_cast<size_t>(o)] : 0.0);
    }
    return y;
}

void expect_shape(const GgufTensor& t, int64_t ne0, int64_t ne1) {
    if (t.ne[0] != ne0 || t.ne[1] != ne1 || t.ne[2] != 1 || t.ne[3] != 1)
        throw std::runtime_error("tensor '" + t.name + "' has shape {" + std::to_string(t.ne[0]) + ", " + std::to_string(t.ne[1]) +
                                 "}, expected {" + std::to_string(ne0) + ", " + std::to_string(ne1) + "}");
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

}  // namespace

std::vector<double> rms_norm(std::span<const double> x, std::span<const double> w, double eps) {
    double ss = 0.0;
    for (double v : x) ss += v * v;
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * (w.empty() ? 1.0 : w[i]);
    return y;
}

std::vector<double> layer_norm(std::span<const double> x, std::span<const double> w, std::span<const double> b, double eps) {
    const double n = static_cast<double>(x.size());
    double mean = 0.0;
    for (double v : x) mean += v;
    mean /= n;
    double var = 0.0;
    for (double v : x) var += (v - mean) * (v - mean);
    var /= n;
    const double scale = 1.0 / std::sqrt(var + eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i)
        y[i] = (x[i] - mean) * scale * (w.empty() ? 1.0 : w[i]) + (b.empty() ? 0.0 : b[i]);
    return y;
}

RefOutputHead::RefOutputHead(const GgufWeights& w) : arch(w.architecture()) {
    if (arch == "llama" || arch == "qwen2" || arch == "gemma2" || arch == "phi3") {
        layer_norm = false;
        eps = w.get_float(w.arch_key("attention.layer_norm_rms_epsilon"));
    } else if (arch == "gpt2" || arch == "gptneox" || arch == "phi2") {
        layer_norm = true;
        eps = w.get_float(w.arch_key("attention.layer_norm_epsilon"));
    } else {
        throw std::runtime_error("RefOutputHead: architecture '" + arch + "' is not supported");
    }
    norm_w = w.tensor_data("output_norm.weight");
    if (layer_norm) norm_b = w.tensor_data("output_norm.bias");  // required by llama.cpp for these
    else if (w.has_tensor("output_norm.bias")) throw std::runtime_error("RefOutputHead: unexpected output_norm.bias for " + arch);
    tied = arch == "gemma2" || !w.has_tensor("output.weight");
    output = w.tensor(tied ? "token_embd.weight" : "output.weight");
    if (output.ne[0] != static_cast<int64_t>(norm_w.size()) || output.ne[2] != 1 || output.ne[3] != 1)
        throw std::runtime_error("RefOutputHead: output matrix shape does not match output_norm");
    if (w.has_tensor("output.bias")) {
        output_b = w.tensor_data("output.bias");
        if (static_cast<int64_t>(output_b.size()) != output.ne[1]) throw std::runtime_error("RefOutputHead: output.bias has the wrong size");
    }
    if (arch == "gemma2") final_softcap = w.find_float(w.arch_key("final_logit_softcapping")).value_or(30.0);
}

std::vector<double> RefOutputHead::norm(std::span<const double> x) const {
    if (x.size() != norm_w.size()) throw std::invalid_argument("RefOutputHead::norm: wrong state size");
    return layer_norm ? pmtest::layer_norm(x, norm_w, norm_b, eps) : rms_norm(x, norm_w, eps);
}

std::vector<double> RefOutputHead::logits(std::span<const double> h) const {
    std::vector<double> z = matvec(output, h);
    for (size_t i = 0; i < z.size(); ++i) {
        if (!output_b.empty()) z[i] += output_b[i];
        if (final_softcap > 0.0) z[i] = final_softcap * std::tanh(z[i] / final_softcap);
    }
    return z;
}

struct RefLlama::Layer {
    GgufTensor attn_norm, wq, wk, wv, wo, ffn_norm, ffn_gate, ffn_up, ffn_down;
    std::optional<GgufTensor> bq, bk, bv, bo, b_gate, b_up, b_down;
};

RefLlama::RefLlama(const GgufWeights& w) {
    hp_.arch = w.architecture();
    if (hp_.arch != "llama" && hp_.arch != "qwen2")
        throw std::runtime_error("RefLlama supports the llama and qwen2 architectures, not '" + hp_.arch + "'");
    const auto key = [&](const std::string& s) { return w.arch_key(s); };

    hp_.n_embd = static_cast<int>(w.get_u32(key("embedding_length")));
    hp_.n_layer = static_cast<int>(w.get_u32(key("block_count")));
    hp_.n_head = static_cast<int>(w.get_u32(key("attention.head_count")));
    hp_.n_head_kv = static_cast<int>(w.find_u32(key("attention.head_count_kv")).value_or(static_cast<uint32_t>(hp_.n_head)));
    hp_.n_ff = static_cast<int>(w.get_u32(key("feed_forward_length")));
    hp_.head_dim = static_cast<int>(w.find_u32(key("attention.key_length")).value_or(static_cast<uint32_t>(hp_.n_embd / hp_.n_head)));
    if (static_cast<int>(w.find_u32(key("attention.value_length")).value_or(static_cast<uint32_t>(hp_.head_dim))) != hp_.head_dim)
        throw std::runtime_error("RefLlama: key_length != value_length is not supported");
    hp_.n_rot = static_cast<int>(w.find_u32(key("rope.dimension_count")).value_or(static_cast<uint32_t>(hp_.head_dim)));
    hp_.rms_eps = w.get_float(key("attention.layer_norm_rms_epsilon"));
    hp_.rope_base = w.find_float(key("rope.freq_base")).value_or(10000.0);
    hp_.rope_neox = hp_.arch == "qwen2";
    if (hp_.n_head_kv <= 0 || hp_.n_head % hp_.n_head_kv != 0)
        throw std::runtime_error("RefLlama: n_head must be a multiple of n_head_kv");
    if (hp_.n_rot > hp_.head_dim || hp_.n_rot % 2 != 0) throw std::runtime_error("RefLlama: invalid rope dimension count");
    if (w.find_u32(key("expert_count")).value_or(0) > 0) throw std::runtime_error("RefLlama: mixture-of-experts is not supported");

    const std::string scaling = w.find_string(key("rope.scaling.type")).value_or("none");
    if (scaling != "none" && scaling != "linear")
        throw std::runtime_error("RefLlama: rope scaling type '" + scaling + "' is not supported");
    double factor = w.find_float(key("rope.scaling.factor")).value_or(0.0);
    if (factor == 0.0) factor = w.find_float(key("rope.scale_linear")).value_or(0.0);
    hp_.rope_freq_scale = factor == 0.0 ? 1.0 : 1.0 / factor;  // as llama.cpp: the factor applies whatever the type
    const double attn_scale = w.find_float(key("attention.scale")).value_or(0.0);
    hp_.attn_scale = attn_scale != 0.0 ? attn_scale : 1.0 / std::sqrt(static_cast<double>(hp_.head_dim));

    const int64_t d = hp_.n_embd, dq = int64_t(hp_.n_head) * hp_.head_dim, dkv = int64_t(hp_.n_head_kv) * hp_.head_dim;
    tok_embd_ = w.tensor("token_embd.weight");
    hp_.n_vocab = static_cast<int>(tok_embd_.ne[1]);
    expect_shape(tok_embd_, d, hp_.n_vocab);
    output_norm_ = w.tensor("output_norm.weight");
    expect_shape(output_norm_, d, 1);
    hp_.tied_output = !w.has_tensor("output.weight");
    output_ = hp_.tied_output ? tok_embd_ : w.tensor("output.weight");
    expect_shape(output_, d, hp_.n_vocab);
    if (w.has_tensor("output.bias")) {
        if (hp_.arch != "qwen2") throw std::runtime_error("RefLlama: output.bias is not part of arch " + hp_.arch);
        output_b_ = w.tensor("output.bias");
        expect_shape(*output_b_, hp_.n_vocab, 1);
    }
    if (w.has_tensor("rope_freqs.weight")) {
        rope_freqs_ = w.tensor_data("rope_freqs.weight");
        if (static_cast<int>(rope_freqs_.size()) != hp_.n_rot / 2) throw std::runtime_error("RefLlama: rope_freqs has the wrong size");
    }

    layers_.resize(static_cast<size_t>(hp_.n_layer));
    for (int il = 0; il < hp_.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        Layer& L = layers_[static_cast<size_t>(il)];
        const auto opt = [&](const std::string& n) { return w.find_tensor(p + n); };
        L.attn_norm = w.tensor(p + "attn_norm.weight");
        expect_shape(L.attn_norm, d, 1);
        if (w.has_tensor(p + "attn_qkv.weight")) {
            // Fused projection: rows [0, dq) are Q, then K, then V.
            const GgufTensor qkv = w.tensor(p + "attn_qkv.weight");
            expect_shape(qkv, d, dq + 2 * dkv);
            const auto slice = [&](const GgufTensor& t, const std::string& name, int64_t r0, int64_t n) {
                GgufTensor s;
                s.name = name;
                s.ne = {t.ne[0], n, 1, 1};
                s.data.assign(t.data.begin() + r0 * t.ne[0], t.data.begin() + (r0 + n) * t.ne[0]);
                return s;
            };
            L.wq = slice(qkv, p + "attn_qkv[q]", 0, dq);
            L.wk = slice(qkv, p + "attn_qkv[k]", dq, dkv);
            L.wv = slice(qkv, p + "attn_qkv[v]", dq + dkv, dkv);
            if (auto b = opt("attn_qkv.bias")) {
                const auto part = [&](const std::string& name, int64_t i0, int64_t n) {
                    GgufTensor s;
                    s.name = name;
                    s.ne = {n, 1, 1, 1};
                    s.data.assign(b->data.begin() + i0, b->data.begin() + i0 + n);
                    return s;
                };
                L.bq = part(p + "attn_qkv.bias[q]", 0, dq);
                L.bk = part(p + "attn_qkv.bias[k]", dq, dkv);
                L.bv = part(p + "attn_qkv.bias[v]", dq + dkv, dkv);
            }
        } else {
            L.wq = w.tensor(p + "attn_q.weight");
            L.wk = w.tensor(p + "attn_k.weight");
            L.wv = w.tensor(p + "attn_v.weight");
        }
        expect_shape(L.wq, d, dq);
        expect_shape(L.wk, d, dkv);
        expect_shape(L.wv, d, dkv);
        if (!L.bq) L.bq = opt("attn_q.bias");
        if (!L.bk) L.bk = opt("attn_k.bias");
        if (!L.bv) L.bv = opt("attn_v.bias");
        if (w.has_tensor(p + "attn_q_norm.weight") || w.has_tensor(p + "attn_k_norm.weight"))
            throw std::runtime_error("RefLlama: Q/K norms are not supported");
        L.wo = w.tensor(p + "attn_output.weight");
        expect_shape(L.wo, dq, d);
        L.bo = opt("attn_output.bias");
        L.ffn_norm = w.tensor(p + "ffn_norm.weight");
        expect_shape(L.ffn_norm, d, 1);
        L.ffn_gate = w.tensor(p + "ffn_gate.weight");
        L.ffn_up = w.tensor(p + "ffn_up.weight");
        L.ffn_down = w.tensor(p + "ffn_down.weight");
        expect_shape(L.ffn_gate, d, hp_.n_ff);
        expect_shape(L.ffn_up, d, hp_.n_ff);
        expect_shape(L.ffn_down, hp_.n_ff, d);
        L.b_gate = opt("ffn_gate.bias");
        L.b_up = opt("ffn_up.bias");
        L.b_down = opt("ffn_down.bias");
    }
}

RefLlama::~RefLlama() = default;

RefLlama::Session::Session(const RefLlama& model)
    : model_(&model), k_(static_cast<size_t>(model.hp_.n_layer)), v_(static_cast<size_t>(model.hp_.n_layer)) {}

RefPosition RefLlama::Session::step(int32_t token) {
    const RefLlama& m = *model_;
    const RefLlamaHparams& hp = m.hp_;
    if (token < 0 || token >= hp.n_vocab) throw std::out_of_range("RefLlama: token id " + std::to_string(token) + " out of range");
    const int pos = n_past_;
    const size_t d = static_cast<size_t>(hp.n_embd), hd = static_cast<size_t>(hp.head_dim);
    const size_t dkv = static_cast<size_t>(hp.n_head_kv) * hd;
    const int group = hp.n_head / hp.n_head_kv;

    // RoPE angles for this position, one per rotated pair.
    const int n_pairs = hp.n_rot / 2;
    std::vector<double> cos_t(static_cast<size_t>(n_pairs)), sin_t(static_cast<size_t>(n_pairs));
    for (int i = 0; i < n_pairs; ++i) {
        double theta = hp.rope_freq_scale * pos * std::pow(hp.rope_base, -2.0 * i / hp.n_rot);
        if (!m.rope_freqs_.empty()) theta /= m.rope_freqs_[static_cast<size_t>(i)];
        cos_t[static_cast<size_t>(i)] = std::cos(theta);
        sin_t[static_cast<size_t>(i)] = std::sin(theta);
    }
    const auto rope = [&](std::vector<double>& x, int n_heads) {
        for (int h = 0; h < n_heads; ++h) {
            double* v = x.data() + static_cast<size_t>(h) * hd;
            for (int i = 0; i < n_pairs; ++i) {
                const size_t a = hp.rope_neox ? static_cast<size_t>(i) : static_cast<size_t>(2 * i);
                const size_t b = hp.rope_neox ? static_cast<size_t>(i + n_pairs) : static_cast<size_t>(2 * i + 1);
                const double x0 = v[a], x1 = v[b];
                v[a] = x0 * cos_t[static_cast<size_t>(i)] - x1 * sin_t[static_cast<size_t>(i)];
                v[b] = x0 * sin_t[static_cast<size_t>(i)] + x1 * cos_t[static_cast<size_t>(i)];
            }
        }
    };

    RefPosition out;
    std::vector<double> x(m.tok_embd_.row(token), m.tok_embd_.row(token) + d);
    out.hf.push_back(x);

    for (int il = 0; il < hp.n_layer; ++il) {
        const Layer& L = m.layers_[static_cast<size_t>(il)];
        const std::vector<double> n = rms_norm(x, L.attn_norm.data, hp.rms_eps);
        std::vector<double> q = matvec(L.wq, n, L.bq);
        std::vector<double> k = matvec(L.wk, n, L.bk);
        std::vector<double> v = matvec(L.wv, n, L.bv);
        rope(q, hp.n_head);
        rope(k, hp.n_head_kv);
        auto& K = k_[static_cast<size_t>(il)];
        auto& V = v_[static_cast<size_t>(il)];
        K.insert(K.end(), k.begin(), k.end());
        V.insert(V.end(), v.begin(), v.end());
        const int n_ctx = pos + 1;

        std::vector<double> attn(static_cast<size_t>(hp.n_head) * hd, 0.0);
        std::vector<double> score(static_cast<size_t>(n_ctx));
        for (int h = 0; h < hp.n_head; ++h) {
            const size_t kvh = static_cast<size_t>(h / group);
            const double* qh = q.data() + static_cast<size_t>(h) * hd;
            double mx = -INFINITY;
            for (int j = 0; j < n_ctx; ++j) {
                const double* kj = K.data() + static_cast<size_t>(j) * dkv + kvh * hd;
                double s = 0.0;
                for (size_t e = 0; e < hd; ++e) s += qh[e] * kj[e];
                score[static_cast<size_t>(j)] = s * hp.attn_scale;
                mx = std::max(mx, score[static_cast<size_t>(j)]);
            }
            double z = 0.0;
            for (double& s : score) z += (s = std::exp(s - mx));
            double* oh = attn.data() + static_cast<size_t>(h) * hd;
            for (int j = 0; j < n_ctx; ++j) {
                const double p = score[static_cast<size_t>(j)] / z;
                const double* vj = V.data() + static_cast<size_t>(j) * dkv + kvh * hd;
                for (size_t e = 0; e < hd; ++e) oh[e] += p * vj[e];
            }
        }
        const std::vector<double> o = matvec(L.wo, attn, L.bo);
        for (size_t i = 0; i < d; ++i) x[i] += o[i];

        const std::vector<double> mnorm = rms_norm(x, L.ffn_norm.data, hp.rms_eps);
        std::vector<double> g = matvec(L.ffn_gate, mnorm, L.b_gate);
        const std::vector<double> u = matvec(L.ffn_up, mnorm, L.b_up);
        for (size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
        const std::vector<double> f = matvec(L.ffn_down, g, L.b_down);
        for (size_t i = 0; i < d; ++i) x[i] += f[i];

        out.block.push_back(x);
        if (il < hp.n_layer - 1) out.hf.push_back(x);
    }
    out.hf.push_back(rms_norm(x, m.output_norm_.data, hp.rms_eps));
    out.logits = matvec(m.output_, out.hf.back(), m.output_b_);
    ++n_past_;
    return out;
}

std::vector<RefPosition> RefLlama::forward(std::span<const int32_t> tokens) const {
    Session s = session();
    std::vector<RefPosition> out;
    out.reserve(tokens.size());
    for (int32_t t : tokens) out.push_back(s.step(t));
    return out;
}

std::vector<int32_t> RefLlama::greedy(std::span<const int32_t> prompt, int n_predict, int32_t stop_id) const {
    if (prompt.empty()) throw std::invalid_argument("RefLlama::greedy: empty prompt");
    Session s = session();
    RefPosition last;
    for (int32_t t : prompt) last = s.step(t);
    std::vector<int32_t> out;
    for (int i = 0; i < n_predict; ++i) {
        const auto it = std::max_element(last.logits.begin(), last.logits.end());  // first maximum
        const int32_t id = static_cast<int32_t>(it - last.logits.begin());
        out.push_back(id);
        if (id == stop_id || i + 1 == n_predict) break;
        last = s.step(id);
    }
    return out;
}

}  // namespace pmtest
