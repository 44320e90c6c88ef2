// The output statistics in the graph (output_stats.hpp): the ggml ops over the logits matrix,
// the llama_sampler_i table that hands them to llama.cpp's backend sampling, and the float64
// combination of the few floats per row that come back.
#include "output_stats.hpp"

#include <fmt/core.h>
#include <ggml-backend.h>
#include <ggml-cpu.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace phasemap::capture {

const char* output_stats_name(OutputStats o) {
    return o == OutputStats::graph ? "graph" : o == OutputStats::host ? "host" : "auto";
}

OutputStats parse_output_stats(const std::string& s) {
    if (s == "auto") return OutputStats::automatic;
    if (s == "graph") return OutputStats::graph;
    if (s == "host") return OutputStats::host;
    throw std::invalid_argument(fmt::format("unknown output statistics path '{}' (use auto, graph or host)", s));
}

namespace {

// Pushes the maxima below every other logit when looking for the second largest.
constexpr float kBig = 1e30f;

OutputStatsGraph* self(const llama_sampler* s) { return static_cast<OutputStatsGraph*>(s->ctx); }

const char* st_name(const llama_sampler*) { return "phasemap-output-stats"; }
// Never run: a statistics chain only ever runs on the backend (the engine samples greedy
// sequences from the graph's arg-max and keeps its CPU chains for the others).
void st_apply(llama_sampler*, llama_token_data_array*) {}
void st_free(llama_sampler*) {}  // the OutputStatsGraph belongs to the engine
llama_sampler* st_clone(const llama_sampler* s);
bool st_backend_init(llama_sampler* s, ggml_backend_buffer_type_t buft, uint32_t) { return self(s)->backend_init(buft); }
void st_backend_apply(llama_sampler* s, ggml_context* ctx, ggml_cgraph*, llama_sampler_data* d) { self(s)->backend_apply(ctx, d); }
void st_backend_reset(llama_sampler* s) { self(s)->backend_reset(); }

llama_sampler_i kIface = {
    /* .name              = */ st_name,
    /* .accept            = */ nullptr,
    /* .apply             = */ st_apply,
    /* .reset             = */ nullptr,
    /* .clone             = */ st_clone,
    /* .free              = */ st_free,
    /* .backend_init      = */ st_backend_init,
    /* .backend_accept    = */ nullptr,
    /* .backend_apply     = */ st_backend_apply,
    /* .backend_set_input = */ nullptr,
    /* .backend_reset     = */ st_backend_reset,
    /* .copy_state        = */ nullptr,
};

llama_sampler* st_clone(const llama_sampler* s) { return llama_sampler_init(&kIface, s->ctx); }

ggml_tensor* named(ggml_tensor* t, const char* name) {
    ggml_format_name(t, "pm_ostats_%s", name);
    return t;
}

}  // namespace

llama_sampler* OutputStatsGraph::make_chain() {
    llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(chain, llama_sampler_init(&kIface, this));
    return chain;
}

OutputStatsGraph::Built OutputStatsGraph::build(ggml_context* ctx, ggml_tensor* l) {
    const int64_t V = l->ne[0], R = l->ne[1];
    ggml_tensor* l3 = ggml_reshape_3d(ctx, l, 1, V, R);  // one "row" per logit, for get_rows
    auto pick = [&](ggml_tensor* idx) { return ggml_reshape_2d(ctx, ggml_get_rows(ctx, l3, ggml_reshape_2d(ctx, idx, 1, R)), 1, R); };
    // m: the largest logit (ggml's arg-max may return any of tied maxima: only its value is used).
    ggml_tensor* m = named(pick(ggml_argmax(ctx, l)), "max");
    ggml_tensor* x = named(ggml_sub(ctx, l, m), "x");  // fl(l − m) ≤ 0
    // TwoSum of l + (−m): l − m = x + err exactly (Knuth), so that e = exp(x)·(1 + err) carries
    // the rounding of the difference, which exp would otherwise turn into a relative error of
    // up to |x|·2⁻²⁴ in each term.
    ggml_tensor* ap = ggml_add(ctx, x, m);
    ggml_tensor* bp = ggml_sub(ctx, x, ap);
    ggml_tensor* da = ggml_sub(ctx, l, ap);
    ggml_tensor* err = named(ggml_sub(ctx, da, ggml_add(ctx, bp, m)), "err");
    ggml_tensor* ex = ggml_exp(ctx, x);
    ggml_tensor* e = named(ggml_add(ctx, ex, ggml_mul(ctx, ex, err)), "e");
    ggml_tensor* sg = named(ggml_sgn(ctx, x), "below");  // −1 below the maximum, 0 at it (x = 0 ⇔ l = m)
    ggml_tensor* s_neg = ggml_sum_rows(ctx, ggml_mul(ctx, e, sg));  // −Σ_{l<m} e
    ggml_tensor* w_neg = ggml_sum_rows(ctx, ggml_mul(ctx, e, x));   // −Σ e (m − l)
    ggml_tensor* n_neg = ggml_sum_rows(ctx, sg);                    // −#{l < m}
    // The second largest logit: the largest below m (the maxima moved to m − 1e30).
    ggml_tensor* l2 = pick(ggml_argmax(ctx, ggml_add(ctx, l, ggml_scale_bias(ctx, sg, -kBig, -kBig))));
    // The first largest logit (host and llama.cpp's CPU greedy rule; ggml's CPU arg-max returns
    // the last): score V − i at the maxima and 0 elsewhere; its unique arg-max is the first maximum.
    ggml_tensor* rank = ggml_scale_bias(ctx, ggml_arange(ctx, 0.0f, float(V), 1.0f), -1.0f, float(V));
    ggml_tensor* top1 = named(ggml_argmax(ctx, ggml_mul(ctx, ggml_scale_bias(ctx, sg, 1.0f, 1.0f), rank)), "top1");
    ggml_tensor* st = ggml_concat(ctx, ggml_concat(ctx, ggml_concat(ctx, ggml_concat(ctx, m, s_neg, 0), w_neg, 0), n_neg, 0), l2, 0);
    return {named(st, "stats"), top1};
}

bool OutputStatsGraph::backend_init(ggml_backend_buffer_type_t buft) {
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
    if (!dev || ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU) return supported_ = supported_ && on_cpu_;
    // Another device: every op of the statistics must run there (else the engine keeps the host path).
    const size_t n = 64;
    ggml_init_params p{n * ggml_tensor_overhead() + ggml_graph_overhead_custom(n, false), nullptr, true};
    ggml_context* ctx = ggml_init(p);
    if (!ctx) return supported_ = false;
    const Built b = build(ctx, ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1024, 2));
    ggml_cgraph* gf = ggml_new_graph_custom(ctx, n, false);
    ggml_build_forward_expand(gf, b.stats);
    ggml_build_forward_expand(gf, b.top1);
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i)
        if (!ggml_backend_dev_supports_op(dev, ggml_graph_node(gf, i))) supported_ = false;
    ggml_free(ctx);
    return supported_;
}

void OutputStatsGraph::backend_apply(ggml_context* ctx, llama_sampler_data* data) {
    ggml_tensor* row = data->logits;
    if (!row) return;
    // llama.cpp hands each output row as a 1-d view of the padded logits matrix: compute the
    // statistics of the whole matrix once per graph and return the row's slice.
    ggml_tensor* src = row->view_src ? row->view_src : row;
    const size_t offs = row->view_src ? row->view_offs : 0;
    int64_t r = 0;
    if (src->type == GGML_TYPE_F32 && ggml_is_contiguous(src) && src->ne[0] == row->ne[0] && ggml_nelements(row) == row->ne[0] &&
        src->ne[2] == 1 && src->ne[3] == 1 && offs % src->nb[1] == 0) {
        r = int64_t(offs / src->nb[1]);
    } else {
        src = ggml_reshape_2d(ctx, ggml_cont(ctx, row), ggml_nelements(row), 1);
    }
    if (built_ctx_ != ctx || built_src_ != src) {
        built_ = build(ctx, src);
        built_ctx_ = ctx;
        built_src_ = src;
    }
    data->probs = ggml_view_1d(ctx, built_.stats, kGraphStatFloats, size_t(r) * built_.stats->nb[1]);
    data->candidates = ggml_view_1d(ctx, built_.top1, 1, size_t(r) * built_.top1->nb[0]);
    // Without save_logits the row itself is no output: llama.cpp then copies nothing else.
    if (!keep_logits_) data->logits = nullptr;
}

metrics::TokenProbStats OutputStatsGraph::combine(const float* g, int32_t top1_id, int64_t n_vocab) {
    const double m = g[0], s = -double(g[1]), w = -double(g[2]), below = -double(g[3]), l2 = g[4];
    const double n_max = double(n_vocab) - below;  // entries equal to the maximum (exact: ≤ 2²⁴)
    metrics::TokenProbStats st;
    const double z = n_max + s;
    const double log_z = std::log(n_max) + std::log1p(s / n_max);
    st.entropy = log_z + w / z;
    st.top1 = 1.0 / z;
    const double second = n_max >= 2 ? st.top1 : (n_vocab > 1 ? std::exp(l2 - m) / z : 0.0);
    st.margin = st.top1 - second;
    st.top1_id = top1_id;
    st.surprisal = log_z;  // of the top-1 token (the graph path serves greedy sequences)
    return st;
}

std::vector<metrics::TokenProbStats> output_stats_on_cpu(std::span<const float> logits, int64_t n_vocab, int n_threads) {
    if (n_vocab < 1 || logits.size() % size_t(n_vocab) != 0)
        throw std::invalid_argument(fmt::format("output_stats_on_cpu: {} logits are not rows of {}", logits.size(), n_vocab));
    const int64_t R = int64_t(logits.size()) / n_vocab;
    if (R == 0) return {};
    const size_t n = 64, bytes = size_t(n_vocab) * size_t(R) * sizeof(float);
    // Every node holds at most one [V, R] f32 tensor (the arg-max / index tensors are smaller).
    ggml_init_params p{n * (ggml_tensor_overhead() + bytes + 64) + ggml_graph_overhead_custom(n, false), nullptr, false};
    ggml_context* ctx = ggml_init(p);
    if (!ctx) throw std::runtime_error("output_stats_on_cpu: cannot allocate the ggml context");
    ggml_tensor* l = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_vocab, R);
    std::memcpy(l->data, logits.data(), bytes);
    const OutputStatsGraph::Built b = OutputStatsGraph::build(ctx, l);
    ggml_cgraph* gf = ggml_new_graph_custom(ctx, n, false);
    ggml_build_forward_expand(gf, b.stats);
    ggml_build_forward_expand(gf, b.top1);
    const ggml_status st = ggml_graph_compute_with_ctx(ctx, gf, std::max(1, n_threads));
    std::vector<metrics::TokenProbStats> out;
    if (st == GGML_STATUS_SUCCESS)
        for (int64_t r = 0; r < R; ++r)
            out.push_back(OutputStatsGraph::combine(static_cast<const float*>(b.stats->data) + r * kGraphStatFloats,
                                                    static_cast<const int32_t*>(b.top1->data)[r], n_vocab));
    ggml_free(ctx);
    if (st != GGML_STATUS_SUCCESS) throw std::runtime_error("output_stats_on_cpu: ggml could not compute the graph");
    return out;
}

}  // namespace phasemap::capture
