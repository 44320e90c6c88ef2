// The architecture sweep (docs/architectures.md): runs phasemap's capture on every random-weight
// GGUF in a directory (written by llama.cpp's test-llama-archs -o DIR, see scripts/archs.sh) plus
// any extra model files, and checks per model:
//
//   load      Model::load accepts it — or refuses it with a message naming the architecture
//             (then the remaining checks are run again with the refusal bypassed, and a refused
//             architecture that passes everything is an error: its refusal is stale);
//   generate  greedy generation of kTokens tokens with hf:all (+ block:L-1) captured;
//   batched   three prompts decoded together (--parallel 3) give the same tokens and states as
//             each prompt alone;
//   emit      the state recorded for token t equals a separate prefill of prompt + tokens < t
//             at its last position (the emitting position, METRICS.md §1);
//   head      hf:L × the output matrix (+ output bias, soft-cap) equals llama.cpp's logits;
//   norm      the final norm (RMSNorm or LayerNorm with the stored weight and bias) of
//             block:L-1 equals hf:L.
//
// A check that does not apply (no output_norm tensor, a head that is not one matrix) is "n/a"
// with the reason. Exit status 0 only when every model either passes every applicable check
// or is refused at load, and at least --min-pass of all models pass.
//
// Usage: archs_sweep --models DIR [--extra FILE]... [--only REGEX] [--doc PATH] [--check-doc PATH] [--min-pass F]
//   --doc writes the table; --check-doc fails when PATH differs from what the sweep writes;
//   --emit-components writes the rows of src/capture/components.cpp's table the measurements call for.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "support/gguf_weights.hpp"
#include "support/ref_llama.hpp"

namespace fs = std::filesystem;
namespace cap = phasemap::capture;

namespace {

constexpr int kTokens = 6;
// Tolerances. States of one token decoded alone vs in a batch of three, and a single-token
// decode vs a prefill of the same sequence, go through the same kernels on rows of different
// batch sizes; llama.cpp's CPU kernels give identical rows there except where a matmul switches
// path with the batch size (f16 weights: activations converted to f16 in both paths). The
// output-head identity recomputes the last matmul in float64 from the stored weights, so it
// carries the matmul's own rounding: ~1e-3 with f16 weights (f16 activations), ~1e-6 with f32.
constexpr double kStateTol = 1e-4;        // ‖a − b‖ / ‖b‖, batched vs alone, decode vs prefill
// With a GELU node: ggml's CPU GELU rounds its input to f16, so a 1e-7 difference in the input
// (another summation order in a matmul of another batch size) can flip one f16 rounding and move
// that element by an f16 ulp (~5e-4 relative); measured up to 1.5e-4 over the whole state (phi2).
constexpr double kStateTolGelu = 1e-3;
constexpr double kNormTol = 1e-4;         // ‖norm(block:L-1) − hf:L‖ / ‖hf:L‖
constexpr double kHeadTolF32 = 1e-4;      // ‖z_ref − z‖ / ‖z‖, f32 output matrix
constexpr double kHeadTolF16 = 5e-3;      //                    f16 output matrix

struct Recorded {
    cap::RunStart start;
    std::vector<cap::TokenRecord> tokens;
    std::vector<std::vector<float>> states;
    std::vector<std::vector<float>> logits;
};

class Sink : public cap::RunSink {
public:
    Recorded rec;
    void begin(const cap::RunStart& s) override { rec.start = s; }
    void token(const cap::TokenRecord& r, std::span<const float> st, std::span<const float> lg) override {
        rec.tokens.push_back(r);
        rec.states.emplace_back(st.begin(), st.end());
        rec.logits.emplace_back(lg.begin(), lg.end());
    }
    void end(const cap::RunEnd&) override {}
};

double rel(std::span<const double> a, std::span<const double> b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}
double relf(std::span<const float> a, std::span<const float> b) {
    std::vector<double> x(a.begin(), a.end()), y(b.begin(), b.end());
    return rel(x, y);
}
bool finite(std::span<const float> x) {
    return std::all_of(x.begin(), x.end(), [](float v) { return std::isfinite(v); });
}

std::string sci(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1e", v);
    return b;
}

// One check's outcome: "ok", "fail" or "n/a", with a detail (measure or reason).
struct Check {
    std::string state = "n/a";
    std::string detail;
    void pass(std::string d = {}) { state = "ok"; detail = std::move(d); }
    void fail(std::string d) { state = "fail"; detail = std::move(d); }
    void na(std::string d) { state = "n/a"; detail = std::move(d); }
    bool failed() const { return state == "fail"; }
};

struct Row {
    std::string file, arch, variant;
    bool recurrent = false;
    std::string refusal;          // Model::load's message when refused
    Check load, generate, batched, emit, head, norm;
    Check inside;                 // the capture points inside the block (resid_mid / attn_out / ffn_out)
    Check routing;                // MoE routing channel (EngineOptions::routing)
    std::string routing_desc;
    std::string components;       // the verified ones, and the identities checked
    std::set<std::string> computed, verified, accepted;  // accepted: by the engine without bypass
    bool identity_failed = false;
    std::string hf0, hfL, norm_kind, head_form, weights;
    bool gelu = false;
    double seconds = 0;
    bool all_ok() const {
        for (const Check* c : {&load, &generate, &batched, &emit, &head, &norm, &inside, &routing})
            if (c->failed()) return false;
        return true;
    }
    std::string first_failure() const {
        const std::pair<const char*, const Check*> cs[] = {{"load", &load},       {"generate", &generate}, {"batched", &batched},
                                                           {"emitting position", &emit}, {"output head", &head}, {"final norm", &norm},
                                                           {"inside the block", &inside}, {"routing", &routing}};
        for (const auto& [n, c] : cs)
            if (c->failed()) return std::string(n) + ": " + c->detail;
        return {};
    }
};

Recorded run(cap::Engine& e, const std::vector<std::string>& prompts, size_t pick = 0) {
    std::vector<cap::Request> reqs;
    for (const auto& p : prompts) {
        cap::Request r;
        r.prompt = p;
        r.n_predict = kTokens;
        reqs.push_back(r);
    }
    std::vector<Sink> sinks(prompts.size());
    e.generate(reqs, [&](size_t i) -> cap::RunSink& { return sinks[i]; });
    return std::move(sinks[pick].rec);
}

std::vector<Recorded> run_all(cap::Engine& e, const std::vector<std::string>& prompts) {
    std::vector<cap::Request> reqs;
    for (const auto& p : prompts) {
        cap::Request r;
        r.prompt = p;
        r.n_predict = kTokens;
        reqs.push_back(r);
    }
    std::vector<Sink> sinks(prompts.size());
    e.generate(reqs, [&](size_t i) -> cap::RunSink& { return sinks[i]; });
    std::vector<Recorded> out;
    for (auto& s : sinks) out.push_back(std::move(s.rec));
    return out;
}

const std::vector<std::string> kPrompts = {"alpha beta gamma", "the quick brown fox", "zeta eta"};
constexpr double kSumTol = 1e-5;  // resid_mid + ffn_out = block, hf + attn_out = resid_mid (f32 adds)

// The capture points inside the block: which of resid_mid / attn_out / ffn_out the graph
// computes (the engine settles that at construction; the model is loaded with refusals
// bypassed), and the residual identities they satisfy at every block and token:
//   sequential block  hf:i + attn_out:i = resid_mid:i,   resid_mid:i + ffn_out:i = block:i
//   parallel block    hf:i + attn_out:i + ffn_out:i = block:i            (no resid_mid)
// A component is verified by an identity that holds; the engine must accept exactly the
// verified ones (checked over all variants of the architecture in main()).
const char* const kKinds[] = {"resid_mid", "attn_out", "ffn_out"};
// Components that no residual identity can verify but a reference computation does:
// tests/archs/test_components.cpp (phi2's parallel MLP recomputed from the GGUF).
const std::map<std::string, std::set<std::string>> kVerifiedByTest = {{"phi2", {"ffn_out"}}};

void check_components(Row& row, const fs::path& path, bool refused, const cap::EngineOptions& base) {
    cap::ModelOptions mo;
    mo.n_threads = 1;
    mo.allow_unverified_architecture = true;
    const std::shared_ptr<cap::Model> model = cap::Model::load(path, mo);
    const int L = model->info().n_layer;
    const size_t d = size_t(model->info().n_embd);
    for (const std::string k : kKinds) {
        cap::EngineOptions eo = base;
        eo.layers = k + ":all";
        try {
            cap::Engine e(model, eo);
            row.computed.insert(k);
        } catch (const std::invalid_argument&) {
        }
    }
    const auto has = [&](const char* k) { return row.computed.count(k) > 0; };
    if (!refused) {
        cap::ModelOptions mn;
        mn.n_threads = 1;
        const std::shared_ptr<cap::Model> normal = cap::Model::load(path, mn);
        for (const std::string k : kKinds) {
            cap::EngineOptions eo = base;
            eo.layers = k + ":all";
            try {
                cap::Engine e(normal, eo);
                row.accepted.insert(k);
            } catch (const std::invalid_argument& ex) {
                const std::string m = ex.what();
                if (row.computed.count(k) && m.find("'" + row.arch + "'") == std::string::npos)
                    row.inside.fail(k + " refusal does not name the architecture: " + m);
            }
        }
    }
    if (row.computed.empty()) {
        row.inside.na("none of resid_mid, attn_out, ffn_out");
        row.components = "–";
        return;
    }
    cap::EngineOptions eo = base;
    eo.layers = "hf:all,block:all";
    for (const auto& k : row.computed) eo.layers += "," + k + ":all";
    Recorded r;
    try {
        cap::Engine e(model, eo);
        r = run(e, {kPrompts[0]});
    } catch (const std::exception& ex) {
        row.inside.fail(ex.what());
        return;
    }
    std::map<std::string, size_t> slot;
    for (size_t i = 0; i < r.start.layers.size(); ++i) slot[r.start.layers[i].label] = i;
    const auto vec = [&](size_t t, const std::string& label) {
        const std::span<const float> s(r.states[t]);
        const size_t i = slot.at(label);
        return std::vector<double>(s.begin() + long(i * d), s.begin() + long((i + 1) * d));
    };
    double e_attn = 0, e_mlp = 0, e_par = 0;
    for (size_t t = 0; t < r.tokens.size(); ++t)
        for (int i = 0; i < L; ++i) {
            const std::string n = std::to_string(i);
            const std::vector<double> in = vec(t, "hf:" + n), blk = vec(t, "block:" + n);
            std::vector<double> a, m, f;
            if (has("attn_out")) a = vec(t, "attn_out:" + n);
            if (has("resid_mid")) m = vec(t, "resid_mid:" + n);
            if (has("ffn_out")) f = vec(t, "ffn_out:" + n);
            std::vector<double> x(d);
            if (!a.empty() && !m.empty()) {
                for (size_t j = 0; j < d; ++j) x[j] = in[j] + a[j];
                e_attn = std::max(e_attn, rel(x, m));
            }
            if (!m.empty() && !f.empty()) {
                for (size_t j = 0; j < d; ++j) x[j] = m[j] + f[j];
                e_mlp = std::max(e_mlp, rel(x, blk));
            }
            if (!a.empty() && !f.empty()) {
                for (size_t j = 0; j < d; ++j) x[j] = in[j] + a[j] + f[j];
                e_par = std::max(e_par, rel(x, blk));
            }
        }
    std::string c;
    const auto ident = [&](const char* what, double e, std::initializer_list<const char*> kinds) {
        const bool ok = e <= kSumTol;
        c += std::string(c.empty() ? "" : "; ") + what + (ok ? " ✓" : " ✗");
        if (ok) for (const char* k : kinds) row.verified.insert(k);
        else row.identity_failed = true;
    };
    if (has("resid_mid") && has("ffn_out")) ident("mid+ffn=block", e_mlp, {"resid_mid", "ffn_out"});
    if (has("resid_mid") && has("attn_out")) ident("in+attn=mid", e_attn, {"attn_out", "resid_mid"});
    if (!has("resid_mid") && has("attn_out") && has("ffn_out")) ident("in+attn+ffn=block (parallel)", e_par, {"attn_out", "ffn_out"});
    if (const auto it = kVerifiedByTest.find(row.arch); it != kVerifiedByTest.end())
        for (const auto& k : it->second)
            if (has(k.c_str()) && !row.verified.count(k)) {
                row.verified.insert(k);
                c += std::string(c.empty() ? "" : "; ") + k + " by test_components";
            }
    std::string accepted;
    for (const char* k : kKinds)
        if (row.verified.count(k)) accepted += (accepted.empty() ? "" : " ") + std::string(k);
    row.components = (accepted.empty() ? std::string("none verified") : accepted) + (c.empty() ? "" : " (" + c + ")");
    if (!row.inside.failed()) row.inside.pass(row.components);
}

void check_model(Row& row, const fs::path& path, bool bypass) {
    cap::ModelOptions mo;
    mo.n_threads = 1;
    mo.allow_unverified_architecture = bypass;
    std::shared_ptr<cap::Model> model;
    try {
        model = cap::Model::load(path, mo);
    } catch (const std::exception& e) {
        row.load.fail(e.what());
        return;
    }
    const cap::ModelInfo& mi = model->info();
    row.arch = mi.architecture;
    row.recurrent = mi.recurrent;
    row.load.pass();
    const size_t d = size_t(mi.n_embd);
    const int L = mi.n_layer;

    cap::EngineOptions eo;
    eo.precision = cap::Precision::exact;
    eo.layers = "hf:all,block:last";
    eo.save_logits = true;
    eo.n_threads = 1;
    eo.n_ctx = 64;
    Recorded alone;
    std::vector<Recorded> each;
    cap::GraphFacts graph;
    try {
        cap::Engine e(model, eo);
        for (const auto& p : kPrompts) each.push_back(run(e, {p}));
        alone = each[0];
        graph = e.graph_facts();
    } catch (const std::exception& ex) {
        row.generate.fail(ex.what());
        return;
    }
    const size_t Lp = alone.start.layers.size();  // hf:0..L, block:L-1
    if (alone.tokens.size() != size_t(kTokens) || Lp != size_t(L) + 2) {
        row.generate.fail("expected " + std::to_string(kTokens) + " tokens × " + std::to_string(L + 2) + " layers, got " +
                          std::to_string(alone.tokens.size()) + " × " + std::to_string(Lp));
        return;
    }
    for (const auto& s : alone.states)
        if (!finite(s)) {
            row.generate.fail("non-finite captured state");
            return;
        }
    row.generate.pass();
    row.gelu = graph.gelu;
    row.hf0 = graph.embd_tensor;
    row.hfL = alone.start.layers[size_t(L)].tensor;

    // batched == alone
    try {
        cap::EngineOptions eb = eo;
        eb.n_parallel = 3;
        cap::Engine e(model, eb);
        const std::vector<Recorded> batch = run_all(e, kPrompts);
        double worst = 0;
        std::string bad;
        for (size_t k = 0; k < kPrompts.size() && bad.empty(); ++k) {
            if (batch[k].tokens.size() != each[k].tokens.size()) bad = "prompt " + std::to_string(k) + ": token count differs";
            for (size_t t = 0; t < batch[k].tokens.size() && bad.empty(); ++t) {
                if (batch[k].tokens[t].id != each[k].tokens[t].id)
                    bad = "prompt " + std::to_string(k) + " token " + std::to_string(t) + " differs";
                else worst = std::max(worst, relf(batch[k].states[t], each[k].states[t]));
            }
        }
        if (!bad.empty()) row.batched.fail(bad);
        else if (worst > (graph.gelu ? kStateTolGelu : kStateTol)) row.batched.fail("max rel " + sci(worst));
        else row.batched.pass(sci(worst));
    } catch (const std::exception& ex) {
        row.batched.fail(ex.what());
    }

    // emitting position == prefill
    try {
        cap::Engine e(model, eo);
        double worst = 0;
        for (int t : {0, kTokens / 2, kTokens - 1}) {
            std::vector<int32_t> ids = alone.start.prompt_ids;
            for (int j = 0; j < t; ++j) ids.push_back(alone.tokens[size_t(j)].id);
            const std::vector<float> st = e.prefill_states(ids);
            worst = std::max(worst, relf(st, alone.states[size_t(t)]));
        }
        if (worst > (graph.gelu ? kStateTolGelu : kStateTol)) row.emit.fail("max rel " + sci(worst));
        else row.emit.pass(sci(worst));
    } catch (const std::exception& ex) {
        row.emit.fail(ex.what());
    }

    // MoE routing: on every model whose graph has ffn_moe_topk-N, per token and MoE block k
    // distinct experts in [0, n_expert) and finite weights in (0, 1] (normalised stages sum to 1);
    // on the others the engine must refuse it.
    try {
        cap::EngineOptions er = eo;
        er.layers = "none";
        er.routing = true;
        const bool moe_graph = std::any_of(graph.node_names.begin(), graph.node_names.end(),
                                           [](const std::string& n) { return n.rfind("ffn_moe_topk-", 0) == 0; });
        std::unique_ptr<cap::Engine> e;
        std::string refusal;
        try {
            e = std::make_unique<cap::Engine>(model, er);
        } catch (const std::invalid_argument& ex) {
            refusal = ex.what();
        }
        if (!e) {
            if (refusal.find("'" + row.arch + "'") != std::string::npos && refusal.find("routers in MoE block") != std::string::npos) {
                row.routing.na("refused: several routers per MoE block");
                row.routing_desc = "refused: several routers per block";
            } else if (moe_graph) row.routing.fail("refused on a graph with ffn_moe_topk: " + refusal);
            else if (refusal.find("'" + row.arch + "'") == std::string::npos) row.routing.fail("refusal does not name the architecture: " + refusal);
            else row.routing.na("no MoE block");
        } else {
            const cap::RoutingLayout& lay = e->routing();
            const Recorded rr = run(*e, {kPrompts[1]});
            const size_t M = lay.blocks.size(), k = size_t(lay.n_expert_used);
            std::string bad;
            bool normalised = true;
            for (const auto& w : lay.weight_tensors) normalised = normalised && w.find("_norm-") != std::string::npos;
            for (const auto& rec : rr.tokens) {
                if (rec.experts.size() != M * k || rec.expert_weights.size() != M * k) { bad = "record size"; break; }
                for (size_t m = 0; m < M && bad.empty(); ++m) {
                    std::set<int32_t> seen;
                    double sum = 0;
                    for (size_t j = 0; j < k; ++j) {
                        const int32_t x = rec.experts[m * k + j];
                        const float wv = rec.expert_weights[m * k + j];
                        if (x < 0 || x >= lay.n_expert) bad = "expert " + std::to_string(x) + " out of range";
                        if (!std::isfinite(wv) || wv <= 0.0f || wv > 1.0f + 1e-6f) bad = "weight " + std::to_string(wv);
                        seen.insert(x);
                        sum += wv;
                    }
                    if (seen.size() != k) bad = "an expert selected twice";
                    if (normalised && std::abs(sum - 1.0) > 1e-5) bad = "normalised weights sum to " + std::to_string(sum);
                }
            }
            row.routing_desc = std::to_string(M) + " MoE block" + (M == 1 ? "" : "s") + ", k=" + std::to_string(k) + " of " +
                               std::to_string(lay.n_expert) + ", `" + lay.weight_tensors.front().substr(0, lay.weight_tensors.front().rfind('-')) + "`";
            if (!moe_graph) row.routing.fail("accepted without ffn_moe_topk in the graph");
            else if (!bad.empty()) row.routing.fail(bad);
            else row.routing.pass(row.routing_desc);
        }
    } catch (const std::exception& ex) {
        row.routing.fail(ex.what());
    }

    try {
        check_components(row, path, bypass, eo);
    } catch (const std::exception& ex) {
        row.inside.fail(ex.what());
    }

    // the two identities, from the GGUF's own tensors
    try {
        pmtest::GgufWeights w(path);
        const auto arch_key = [&](const std::string& k) { return w.arch_key(k); };
        // llama.cpp's saver writes every hparam key, the unused ones as 0 (and the soft-cap at its
        // default 30): the non-zero epsilon is the one the architecture reads.
        const double rms_eps = w.find_float(arch_key("attention.layer_norm_rms_epsilon")).value_or(0.0);
        const double ln_eps = w.find_float(arch_key("attention.layer_norm_epsilon")).value_or(0.0);
        std::vector<double> epss = {rms_eps};
        if (ln_eps != rms_eps) epss.push_back(ln_eps);
        const bool has_norm = w.has_tensor("output_norm.weight");
        const std::vector<double> nw = has_norm ? w.tensor_data("output_norm.weight") : std::vector<double>();
        const std::vector<double> nb = w.has_tensor("output_norm.bias") ? w.tensor_data("output_norm.bias") : std::vector<double>();
        const size_t i_hfL = size_t(L), i_blk = size_t(L) + 1;
        if (!has_norm) {
            row.norm.na("no output_norm.weight");
        } else if (nw.size() != d) {
            row.norm.na("output_norm has " + std::to_string(nw.size()) + " values, n_embd " + std::to_string(d));
        } else {
            // RMSNorm and LayerNorm (with the stored bias, if any), each with either stored
            // epsilon, are tried; the kind that fits is named in the table, none fitting fails.
            double e_rms = 1e300, e_ln = 1e300;
            for (const double eps : epss) {
                double er = 0, el = 0;
                for (size_t t = 0; t < alone.tokens.size(); ++t) {
                    const std::span<const float> s(alone.states[t]);
                    std::vector<double> blk(s.begin() + long(i_blk * d), s.begin() + long((i_blk + 1) * d));
                    std::vector<double> hf(s.begin() + long(i_hfL * d), s.begin() + long((i_hfL + 1) * d));
                    er = std::max(er, rel(pmtest::rms_norm(blk, nw, eps), hf));
                    el = std::max(el, rel(pmtest::layer_norm(blk, nw, nb, eps), hf));
                }
                e_rms = std::min(e_rms, er);
                e_ln = std::min(e_ln, el);
            }
            const bool rms = e_rms <= e_ln;
            const double e = std::min(e_rms, e_ln);
            // A kind is named only when it fits: between two misfits the smaller error is noise.
            row.norm_kind = e > kNormTol ? "neither fits" : rms ? "RMSNorm" : (nb.empty() ? "LayerNorm" : "LayerNorm+bias");
            if (e <= kNormTol) row.norm.pass(sci(e));
            else row.norm.fail("neither RMSNorm (" + sci(e_rms) + ") nor LayerNorm (" + sci(e_ln) + ") of block:L-1 gives hf:L");
        }
        const bool tied = !w.has_tensor("output.weight");
        const std::string out_name = tied ? "token_embd.weight" : "output.weight";
        if (!w.has_tensor(out_name)) {
            row.head.na("no output matrix");
        } else {
            const pmtest::GgufTensorInfo& oi = w.tensor_info(out_name);
            row.weights = oi.type_name;
            const double softcap = w.find_float(arch_key("final_logit_softcapping")).value_or(0.0);
            const double lscale = w.find_float(arch_key("logit_scale")).value_or(0.0);
            if (oi.ne[0] != int64_t(d) || oi.ne[1] != mi.n_vocab || oi.ne[2] != 1) {
                row.head.na("output matrix " + std::to_string(oi.ne[0]) + "×" + std::to_string(oi.ne[1]) + " is not n_embd × n_vocab");
            } else {
                const pmtest::GgufTensor W = w.tensor(out_name);
                const std::vector<double> ob = w.has_tensor("output.bias") ? w.tensor_data("output.bias") : std::vector<double>();
                // The head forms an architecture may apply after W·h + b: none, the final
                // soft-cap, the logit scale (multiplied or divided). The one that fits is named.
                // A stored output.bias may also go unused (qwen2vl, dream load it but never add it).
                struct Form { std::string name; double scale; bool cap; bool bias; };
                std::vector<Form> forms;
                for (const bool bias : ob.empty() ? std::vector<bool>{false} : std::vector<bool>{true, false}) {
                    const std::string b = ob.empty() ? "" : bias ? " + b" : " (output.bias unused)";
                    forms.push_back({"W·h" + b, 1.0, false, bias});
                    if (softcap > 0) forms.push_back({"soft-cap(W·h" + b + ")", 1.0, true, bias});
                    if (lscale > 0 && lscale != 1.0) {
                        forms.push_back({"logit_scale·W·h" + b, lscale, false, bias});
                        forms.push_back({"W·h" + b + " / logit_scale", 1.0 / lscale, false, bias});
                    }
                }
                std::vector<double> worst(forms.size(), 0.0);
                for (size_t t = 0; t < alone.tokens.size(); ++t) {
                    const std::span<const float> s(alone.states[t]);
                    std::vector<double> z(size_t(mi.n_vocab));
                    for (int64_t v = 0; v < oi.ne[1]; ++v) {
                        double acc = 0;
                        const double* r = W.row(v);
                        for (size_t j = 0; j < d; ++j) acc += r[j] * double(s[i_hfL * d + j]);
                        z[size_t(v)] = acc;
                    }
                    std::vector<double> lg(alone.logits[t].begin(), alone.logits[t].end());
                    for (size_t k = 0; k < forms.size(); ++k) {
                        std::vector<double> zk = z;
                        for (size_t v = 0; v < zk.size(); ++v) {
                            double& x = zk[v];
                            if (forms[k].bias) x += ob[v];
                            x *= forms[k].scale;
                            if (forms[k].cap) x = softcap * std::tanh(x / softcap);
                        }
                        worst[k] = std::max(worst[k], rel(zk, lg));
                    }
                }
                const size_t best = size_t(std::min_element(worst.begin(), worst.end()) - worst.begin());
                row.head_form = std::string(tied ? "tied: " : "") + forms[best].name;
                const double tol = oi.type_name == "f32" ? kHeadTolF32 : kHeadTolF16;
                if (worst[best] <= tol) row.head.pass(sci(worst[best]));
                else row.head.fail("hf:L × " + out_name + " vs logits: rel " + sci(worst[best]) + " (best form " + forms[best].name + ")");
            }
        }
    } catch (const std::exception& ex) {
        row.head.fail(std::string("reading the GGUF: ") + ex.what());
    }
}

std::string mark(const Check& c) { return c.state == "ok" ? "✓" : c.state == "fail" ? "✗" : "–"; }

// Known precision facts (measured elsewhere, see the document's head).
std::string precision_note(const Row& r) {
    std::vector<std::string> n;
    if (r.gelu) n.push_back("GELU: ggml CPU rounds its input to f16 (~1e-4 vs float64)");
    if (r.weights == "f16") n.push_back("f16 weights: f16 activations in the matmul (~1e-3)");
    if (r.recurrent) n.push_back("recurrent state: `--precision exact` does not change it");
    std::string s;
    for (size_t i = 0; i < n.size(); ++i) s += (i ? "; " : "") + n[i];
    return s;
}

std::string md_escape(std::string s) {
    std::string o;
    for (char c : s) {
        if (c == '|') o += "\\|";
        else if (c == '\n') o += ' ';
        else o += c;
    }
    if (o.size() > 220) o = o.substr(0, 217) + "...";
    return o;
}

void write_doc(const fs::path& out, const std::vector<Row>& rows) {
    size_t ok = 0, refused = 0;
    for (const auto& r : rows) {
        if (!r.refusal.empty()) ++refused;
        else if (r.all_ok()) ++ok;
    }
    std::ofstream f(out);
    f << "# Architectures\n\n"
      << "Generated by the architecture sweep (tests/archs/sweep/sweep.cpp; ctest `archs.sweep`, or `scripts/archs.sh SRC BUILD --sweep build/archs_sweep --extra MODEL --doc docs/architectures.md`); do not edit by hand.\n\n"
      << "Models: every architecture × variant (dense, MoE) that the pinned llama.cpp's `tests/test-llama-archs -o DIR` "
         "writes with random weights (n_embd 64–512, 2–22 blocks, f16/f32 weights), plus `tiny-rwkv7` standing in for "
         "RWKV, which that generator skips.\n\n"
      << "**" << rows.size() << " models: " << ok << " ✓ on every applicable check, " << refused
      << " refused at load**.\n\n"
      << "Checks (✓ pass, ✗ fail, – not applicable):\n\n"
      << "- **gen**: greedy generation of " << kTokens << " tokens with `--layers hf:all,block:last`, finite states;\n"
      << "- **batch**: three prompts decoded together (`--parallel 3`) give the same tokens, and states within "
      << sci(kStateTol) << " relative (" << sci(kStateTolGelu)
      << " where the graph has a GELU node: its f16 input rounding turns a 1e-7 difference into an f16 ulp), as each prompt alone;\n"
      << "- **emit**: the state of token t (t = 0, " << kTokens / 2 << ", " << kTokens - 1
      << ") equals a separate prefill of the prompt and tokens < t at its last position (same tolerances);\n"
      << "- **head**: hf:L × the output matrix (`output.weight`, or `token_embd.weight` when tied), recomputed in float64, "
         "equals llama.cpp's logits within "
      << sci(kHeadTolF32) << " relative (f32 matrix) or " << sci(kHeadTolF16)
      << " (f16 matrix). llama.cpp's saver stores every hparam key (the final soft-cap at its default 30 for all "
         "architectures) and some architectures load an `output.bias` they never add, so the forms W·h, W·h + b, "
         "soft-cap(…) and the logit scale are each tried and the one that fits is named (**head form**);\n"
      << "- **norm**: the final norm of block:L-1 (RMSNorm or LayerNorm with the stored weight and bias, either stored "
         "epsilon; the kind that fits is named) equals hf:L within "
      << sci(kNormTol) << ".\n\n"
      << "Precision facts. An independent PyTorch forward agrees with capture to ~2e-7 on Qwen2 and Llama but only "
         "~1e-4 on GPT-2: ggml's CPU GELU rounds its input to f16 and reads an f16 table, which holds for every "
         "architecture whose graph has a GELU node (marked below). f16 weights give ~1e-3 (the CPU matmul converts the "
         "activations to f16). `--precision exact` (F32 KV cache, no flash attention) fixes the KV cache and attention "
         "only — not GELU, not f16 weights, not a recurrent state.\n\n"
      << "- **inside**: the capture points inside the block that the graph computes (`resid_mid:N` = `ffn_inp-N`, "
         "`attn_out:N` = `attn_out-N`, `ffn_out:N` = `ffn_out-N` or `ffn_moe_out-N`), and the residual identities "
         "they satisfy at every block and token within "
      << sci(kSumTol)
      << " relative: sequential blocks hf:N + attn_out:N = resid_mid:N and resid_mid:N + ffn_out:N = block:N, "
         "parallel blocks hf:N + attn_out:N + ffn_out:N = block:N. A component not listed is refused by the "
         "engine for that architecture (`does not compute`).\n\n"
      << "- **route**: MoE routing (`generate --routing`): where the graph has `ffn_moe_topk-N`, every token and MoE "
         "block gives k distinct experts in [0, n_expert) and weights in (0, 1] (summing to 1 where the last weight "
         "stage is `ffn_moe_weights_norm`); elsewhere the engine refuses it naming the architecture. Note: the "
         "generator's MoE models have 2 experts with k = 2, so the selection itself is only exercised by "
         "tests/archs/test_routing.cpp (the router recomputed from the GGUF on llama-moe and on make-model's "
         "llama MoE with 8 experts, k = 2; routing metrics in docs/metrics-moe.md).\n\n"
      << "| architecture | variant | load | gen | batch | emit | head | norm | inside | route | hf:0 | hf:L | final norm | head form | block components | routing | notes |\n"
      << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& r : rows) {
        std::string notes;
        if (!r.refusal.empty()) {
            const char* why = cap::architecture_refusal(r.arch);
            std::string failing;
            const std::pair<const char*, const Check*> cs[] = {{"gen", &r.generate}, {"batch", &r.batched}, {"emit", &r.emit},
                                                               {"head", &r.head},    {"norm", &r.norm}, {"inside", &r.inside}, {"route", &r.routing}};
            for (const auto& [n, c] : cs)
                if (c->failed()) failing += (failing.empty() ? "" : ", ") + std::string(n);
            notes = "**refused at load**: " + md_escape(why ? why : r.refusal) + " (loaded anyway, it fails " + failing + ")";
        }
        else if (!r.all_ok()) notes = "✗ " + md_escape(r.first_failure());
        for (const Check* c : {&r.head, &r.norm})
            if (c->state == "n/a" && !c->detail.empty()) notes += (notes.empty() ? "" : "; ") + std::string("–: ") + md_escape(c->detail);
        const std::string pn = precision_note(r);
        if (!pn.empty()) notes += (notes.empty() ? "" : "; ") + pn;
        f << "| " << (r.arch.empty() ? r.file : r.arch) << " | " << r.variant << " | " << (r.refusal.empty() ? mark(r.load) : "✗")
          << " | " << mark(r.generate) << " | " << mark(r.batched) << " | " << mark(r.emit) << " | " << mark(r.head) << " | "
          << mark(r.norm) << " | " << mark(r.inside) << " | " << mark(r.routing) << " | " << (r.hf0.empty() ? "" : "`" + r.hf0 + "`") << " | " << (r.hfL.empty() ? "" : "`" + r.hfL + "`")
          << " | " << r.norm_kind << " | " << r.head_form << " | " << r.components << " | " << r.routing_desc << " | " << notes << " |\n";
    }
}

}  // namespace

int main(int argc, char** argv) {
    fs::path models, doc, check_doc, emit;
    std::vector<fs::path> extra;
    std::string only;
    double min_pass = 0.9;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << "archs_sweep: " << a << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--models") models = next();
        else if (a == "--extra") extra.emplace_back(next());
        else if (a == "--only") only = next();
        else if (a == "--doc") doc = next();
        else if (a == "--check-doc") check_doc = next();
        else if (a == "--emit-components") emit = next();
        else if (a == "--min-pass") min_pass = std::stod(next());
        else {
            std::cerr << "archs_sweep: unknown argument '" << a << "'\n";
            return 2;
        }
    }
    if (models.empty() || !fs::is_directory(models)) {
        std::cerr << "archs_sweep: --models DIR (a directory of GGUF files) is required\n";
        return 2;
    }
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(models))
        if (e.path().extension() == ".gguf") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& x : extra) {
        if (!fs::exists(x)) {
            std::cerr << "archs_sweep: extra model '" << x.string() << "' does not exist\n";
            return 2;
        }
        files.push_back(x);
    }
    if (!only.empty()) {
        const std::regex re(only);
        std::erase_if(files, [&](const fs::path& p) { return !std::regex_search(p.stem().string(), re); });
    }
    if (files.empty()) {
        std::cerr << "archs_sweep: no model selected\n";
        return 2;
    }
    std::vector<Row> rows;
    const auto t_all = std::chrono::steady_clock::now();
    int problems = 0;
    for (const auto& p : files) {
        Row r;
        r.file = p.stem().string();
        const std::string stem = r.file;
        r.variant = stem.size() > 4 && stem.ends_with("-moe") ? "MoE" : stem.ends_with("-dense") ? "dense" : "file";
        const auto t0 = std::chrono::steady_clock::now();
        check_model(r, p, false);
        // A refusal: the message must name the architecture; the checks run again without it.
        const std::string msg = r.load.failed() ? r.load.detail : "";
        if (!msg.empty() && msg.find("refuses architecture") != std::string::npos) {
            Row again;
            again.file = r.file;
            again.variant = r.variant;
            check_model(again, p, true);
            again.refusal = msg;
            if (msg.find("'" + again.arch + "'") == std::string::npos) {
                std::cerr << r.file << ": refusal does not name the architecture '" << again.arch << "': " << msg << "\n";
                ++problems;
            }
            if (again.all_ok()) {
                std::cerr << r.file << ": refused at load but passes every check — the refusal is stale\n";
                ++problems;
            }
            r = std::move(again);
        } else if (!r.all_ok()) {
            std::cerr << r.file << ": FAILS and is not refused at load: " << r.first_failure() << "\n";
            ++problems;
        }
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::cout << (r.refusal.empty() ? (r.all_ok() ? "ok      " : "FAIL    ") : "refused ") << r.file << " (" << r.arch << ")"
                  << " load " << mark(r.load) << " gen " << mark(r.generate) << " batch " << mark(r.batched) << " " << r.batched.detail
                  << " emit " << mark(r.emit) << " " << r.emit.detail << " head " << mark(r.head) << " " << r.head.detail << " norm "
                  << mark(r.norm) << " " << r.norm.detail << " inside " << mark(r.inside) << " " << r.components << " hf0=" << r.hf0 << " " << r.seconds << "s";
        if (!r.all_ok()) std::cout << "  [" << r.first_failure() << "]";
        std::cout << std::endl;
        rows.push_back(std::move(r));
    }
    // The engine's component refusals (src/capture/components.cpp) against the measurements: per
    // architecture, every computed component that some variant does not verify must be refused,
    // and a refused one must not be verified by every variant (a stale refusal).
    std::map<std::string, std::set<std::string>> unverified;
    std::map<std::string, bool> identity_failed;
    for (const auto& r : rows) {
        for (const auto& k : r.computed)
            if (!r.verified.count(k)) unverified[r.arch].insert(k);
        if (r.identity_failed) identity_failed[r.arch] = true;
    }
    for (auto& r : rows) {
        if (!r.refusal.empty() || r.computed.empty() || !r.generate.state.starts_with("ok")) continue;
        std::string bad;
        for (const auto& k : r.computed) {
            const bool should_refuse = unverified[r.arch].count(k) > 0;
            const bool refused = !r.accepted.count(k);
            if (should_refuse && !refused) bad += k + " is accepted but not verified; ";
            if (!should_refuse && refused) bad += k + " is refused but verified (stale refusal); ";
        }
        if (!bad.empty()) {
            r.inside.fail(bad + "update src/capture/components.cpp (archs_sweep --emit-components)");
            std::cerr << r.file << ": " << r.inside.detail << "\n";
            ++problems;
        }
    }
    if (!emit.empty()) {
        std::ofstream f(emit);
        for (const auto& [arch, ks] : unverified) {
            if (ks.empty() || arch.empty()) continue;
            std::string kinds;
            for (const char* k : kKinds)
                if (ks.count(k)) kinds += (kinds.empty() ? "" : " ") + std::string(k);
            f << "    {\"" << arch << "\", \"" << kinds << "\", \""
              << (identity_failed[arch] ? "the residual identity the architecture sweep checks fails for it (the block scales or "
                                          "normalises it before the residual add)"
                                        : "the architecture sweep cannot verify it (the graph lacks the component it is checked against)")
              << "\"},\n";
        }
    }
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
    size_t ok = 0;
    for (const auto& r : rows)
        if (r.refusal.empty() && r.all_ok()) ++ok;
    const double share = double(ok) / double(rows.size());
    std::cout << ok << " of " << rows.size() << " models pass every applicable check (" << share * 100 << " %), "
              << rows.size() - ok << " refused or failing; " << total << " s\n";
    if (!doc.empty()) write_doc(doc, rows);
    if (!check_doc.empty()) {
        // The committed table must be what this sweep writes (the same models, checks, reasons).
        const auto slurp = [](const fs::path& p) {
            std::ifstream f(p);
            std::stringstream ss;
            ss << f.rdbuf();
            return ss.str();
        };
        const fs::path fresh = doc.empty() ? fs::temp_directory_path() / "phasemap-architectures.md" : doc;
        if (doc.empty()) write_doc(fresh, rows);
        if (!fs::exists(check_doc) || slurp(fresh) != slurp(check_doc)) {
            std::cerr << check_doc.string() << " is not what the sweep writes now (" << fresh.string()
                      << "): regenerate it with scripts/archs.sh SRC BUILD --sweep build/archs_sweep --extra MODEL --doc "
                      << check_doc.string() << "\n";
            ++problems;
        }
    }
    if (share < min_pass) {
        std::cerr << "pass share " << share << " below --min-pass " << min_pass << "\n";
        ++problems;
    }
    return problems ? 1 : 0;
}
