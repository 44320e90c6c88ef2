// Generation loop and hidden-state capture through the scheduler eval callback.
//
// Every decode that captures holds exactly one token per active sequence, and every token of
// such a batch is an output. Each captured graph tensor therefore has one row per batch token
// (also the last block's, which llama.cpp reduces to output rows), and llama.cpp keeps the
// batch order across micro-batches (simple split for a unified KV cache, sequential split for
// recurrent memory), so row r of a tensor belongs to batch entry r.
//
// Prompts are prefilled without capture up to their second-to-last token; the last prompt
// token is then decoded in the first captured step, whose position is the emitting position of
// generated token 0 (METRICS.md §1).
//
// Interventions (intervene.hpp): before a decode the engine lists, per block, the batch rows
// to edit; the callback then also asks for `l_out-i` of those blocks, edits the rows in place
// (host buffer directly, otherwise through ggml_backend_tensor_get/set) and only then copies
// captured rows, so captures of an edited tensor show the edited state. With no intervention
// declared the edit table is empty and the callback does no extra work.
//
// GPU backends: ggml_backend_sched, when an eval callback is set, computes each split as views
// that end at every node the callback asks for, and synchronises after each view; the CUDA
// backend keys its CUDA graphs by a view's first node. So the callback asks only for the tensors
// captured, edited or routed in this decode — with capture off it asks for none, each split stays
// one view and its CUDA graph is llama.cpp's own; with capture on, the views (and their CUDA
// graphs) are the same at every step. Captured rows in device memory are copied into pinned host
// memory (DeviceCopy); host tensors are read in place.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <utility>
#include <ggml-backend.h>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include "llama_common.hpp"
#include "output_stats.hpp"
#include "threads.hpp"

namespace phasemap::capture {

namespace {
// Names under which architectures publish the input of block 0 (HF's hidden_states[0]):
// the token embedding ("embd"), Gemma's scaled embedding ("inp_scaled"), GPT-2-style
// embedding plus position embedding ("inpL"); graphs that rename the embedding right after
// build_inp_embd ("model.embed_tokens": lfm2, qwen3next, kimi-linear; "model.input_embed":
// qwen35, qwen35moe, bailingmoe3 — docs/architectures.md). The last one computed in a graph wins.
constexpr const char* kEmbdNames[] = {"embd", "inp_embd", "inp_scaled", "inpL", "model.embed_tokens", "model.input_embed"};

bool is_embd_name(const char* n) {
    for (const char* e : kEmbdNames)
        if (std::strcmp(n, e) == 0) return true;
    return false;
}

// Block index of an exact "l_out-N" name, else −1 (views such as "l_out-3 (reshaped)" excluded).
int l_out_block(const char* n) {
    if (std::strncmp(n, "l_out-", 6) != 0) return -1;
    int v = 0;
    const char* p = n + 6;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; ++p) v = v * 10 + (*p - '0');
    return *p == '\0' ? v : -1;
}

// One row of one decode to edit.
struct RowEdit {
    int row;                       // batch row
    const Intervention* iv;
    InterventionState* st;
    int t;                         // generated-token step, or −1 − position for prefill rows
    uint64_t key;                  // sequence key (request index)
};
// Captured tensors that live in device memory (a GPU backend), copied to the host for the
// callback: into pinned memory of the device's host buffer type (cudaMallocHost on CUDA; pageable
// memory when the device has none), asynchronously on a backend of the tensor's own device and
// synchronised before the callback returns — ggml's allocator may hand the tensor's memory to a
// later node of the same graph, and llama.h does not expose the compute stream the copy could be
// queued behind. Host tensors (the CPU backend) never come here: they are read in place.
struct DeviceCopy {
    struct Device {
        ggml_backend_dev_t dev = nullptr;
        ggml_backend_t backend = nullptr;        // for ggml_backend_tensor_get_async
        ggml_backend_buffer_t pinned = nullptr;  // host buffer of the device
        std::vector<unsigned char> pageable;     // when the device has no host buffer type
    };
    std::vector<Device> devices;

    DeviceCopy() = default;
    DeviceCopy(const DeviceCopy&) = delete;
    DeviceCopy& operator=(const DeviceCopy&) = delete;
    ~DeviceCopy() {
        for (Device& d : devices) {
            if (d.pinned) ggml_backend_buffer_free(d.pinned);
            if (d.backend) ggml_backend_free(d.backend);
        }
    }

    Device& device_of(const ggml_tensor* t) {
        ggml_backend_dev_t dev = ggml_backend_buft_get_device(ggml_backend_buffer_get_type(t->buffer));
        for (Device& d : devices)
            if (d.dev == dev) return d;
        Device& d = devices.emplace_back();
        d.dev = dev;
        if (dev) d.backend = ggml_backend_dev_init(dev, nullptr);
        return d;
    }

    // The bytes of `t` on the host, valid until the next fetch from the same device.
    const unsigned char* fetch(const ggml_tensor* t) {
        const size_t n = ggml_nbytes(t);
        Device& d = device_of(t);
        unsigned char* dst = nullptr;
        ggml_backend_buffer_type_t host = d.dev ? ggml_backend_dev_host_buffer_type(d.dev) : nullptr;
        if (host) {
            if (!d.pinned || ggml_backend_buffer_get_size(d.pinned) < n) {
                if (d.pinned) ggml_backend_buffer_free(d.pinned);
                d.pinned = ggml_backend_buft_alloc_buffer(host, std::max(n, d.pinned ? 2 * ggml_backend_buffer_get_size(d.pinned) : n));
            }
            if (d.pinned) dst = static_cast<unsigned char*>(ggml_backend_buffer_get_base(d.pinned));
        }
        if (!dst) {
            d.pageable.resize(n);
            dst = d.pageable.data();
        }
        if (d.backend) {
            ggml_backend_tensor_get_async(d.backend, t, dst, 0, n);
            ggml_backend_synchronize(d.backend);
        } else {
            ggml_backend_tensor_get(t, dst, 0, n);
        }
        return dst;
    }
};

// The default context per sequence: the training context, at most 4096.
int default_context(const ModelInfo& mi) { return std::min(mi.n_ctx_train > 0 ? mi.n_ctx_train : 4096, 4096); }

// The output-statistics chain of each slot (nullptr: host path), freed after the context (the
// Impl's destructor frees the context before its members go).
struct StatsChains {
    std::vector<llama_sampler*> v;
    ~StatsChains() {
        for (llama_sampler* c : v)
            if (c) llama_sampler_free(c);
    }
};

}  // namespace

struct Engine::Impl {
    std::shared_ptr<Model> model;
    EngineOptions opt;
    EngineFacts facts;
    llama_context* ctx = nullptr;
    // The CPU workers (threads.cpp), attached to ctx for single-token and batched graphs alike.
    ggml_threadpool* threadpool = nullptr;
    int n_ctx_seq = 0;  // context per sequence
    int n_batch = 0;
    std::vector<ResolvedLayer> layers;
    int d = 0;
    size_t Lp = 0;

    // tensor name → destination slots (indices into layers)
    std::unordered_map<std::string, std::vector<int>> want;
    std::vector<int> embd_slots;

    // capture state of the current decode
    bool capture_on = false;
    int rows_expected = 0;
    std::vector<float> step;                          // [rows, Lp, d]
    std::unordered_map<std::string, int> rows_seen;   // per tensor name
    std::string cb_error;
    DeviceCopy device_copy;                           // captured tensors in device memory
    // Probe decode (components): graph tensor name → (count, ne[0]) over the graph's nodes.
    bool probing = false;
    std::unordered_map<std::string, std::pair<int, int64_t>> probe_nodes;
    // MoE routing (EngineOptions::routing): graph name → (MoE slot, is the weights tensor)
    RoutingLayout routing;
    std::unordered_map<std::string, std::pair<int, bool>> route_want;
    std::vector<int32_t> route_experts;               // [rows, M, k] of the current decode
    std::vector<float> route_weights;                 // [rows, M, k]
    GraphFacts graph;                                 // filled during the first captured decode
    std::set<std::string> graph_names;
    bool recording = false;

    // edits of the current decode, per block (see RowEdit); edit_on when any is listed
    bool edit_on = false;
    std::vector<std::vector<RowEdit>> edits;   // [n_layer]
    std::vector<int> edit_rows_seen;           // per block, rows handed to the callback so far
    int edit_rows_expected = 0;
    std::vector<float> edit_row;               // device round trip
    std::exception_ptr cb_exception;           // thrown by a hook during the current decode

    // EngineOptions::output_stats = graph (output_stats.hpp): the statistics graph shared by the
    // chains of the slots that compute their statistics in the graph (greedy sequences).
    std::unique_ptr<OutputStatsGraph> ostats;
    StatsChains chains;

    ~Impl() {
        if (ctx) {
            llama_detach_threadpool(ctx);
            llama_free(ctx);
        }
        if (threadpool) ggml_threadpool_free(threadpool);
    }

    static bool eval_cb(ggml_tensor* t, bool ask, void* ud) {
        auto* self = static_cast<Impl*>(ud);
        if (self->probing) {
            if (ask) {
                auto& e = self->probe_nodes[t->name];
                ++e.first;
                e.second = t->ne[0];
            }
            return ask ? false : true;
        }
        if (!self->capture_on && !self->edit_on) return ask ? false : true;
        // After a hook threw: ask for each node (so each split stops at its first) and abort.
        if (self->cb_exception) return ask;
        if (ask && self->recording) self->record_node(t);
        int blk = -1;
        if (self->edit_on) {
            blk = l_out_block(t->name);
            if (blk >= 0 && (blk >= int(self->edits.size()) || self->edits[size_t(blk)].empty())) blk = -1;
        }
        const bool embd = self->capture_on && !self->embd_slots.empty() && is_embd_name(t->name);
        const bool route = self->capture_on && !self->route_want.empty() && self->route_want.count(t->name) > 0;
        const bool cap = self->capture_on && (embd || self->want.count(t->name) > 0);
        if (ask) return cap || route || blk >= 0;
        if (blk >= 0) self->on_edit(t, blk);  // edit first: captures see the edited state
        // A hook (InterventionOp::hook) threw: stop computing this graph; decode() rethrows it
        // after llama_decode returns, so no exception unwinds through ggml's C code.
        if (self->cb_exception) return false;
        if (cap) self->on_tensor(t, embd);
        if (route) self->on_routing(t);
        return true;
    }

    // Settles the graph tensor of every component layer (resid_mid / attn_out / ffn_out /
    // tensor:) on the model's own graph: one decode of one token with a callback that only
    // lists the nodes, then the memory is cleared. Throws std::invalid_argument naming the
    // architecture and the component when the graph does not compute it once per block.
    void probe() {
        probing = true;
        probe_nodes.clear();
        llama_token tok = 0;
        llama_batch b = llama_batch_get_one(&tok, 1);
        take_llama_errors();
        const int rc = llama_decode(ctx, b);
        probing = false;
        llama_memory_clear(llama_get_memory(ctx), true);
        if (rc != 0) {
            const std::string why = take_llama_errors();
            throw std::runtime_error(fmt::format("llama_decode failed while listing the graph (code {}){}{}", rc, why.empty() ? "" : ": ", why));
        }
    }

    void resolve_components() {
        const std::string& arch = model->info().architecture;
        for (ResolvedLayer& r : layers) {
            if (!r.component()) continue;
            std::vector<std::string> names{r.tensor};
            names.insert(names.end(), r.alternatives.begin(), r.alternatives.end());
            std::string chosen, twice;
            for (const std::string& n : names) {
                const auto it = probe_nodes.find(n);
                if (it == probe_nodes.end()) continue;
                if (it->second.first > 1) { if (twice.empty()) twice = n; continue; }
                if (it->second.second != d)
                    throw std::invalid_argument(fmt::format("architecture '{}': graph tensor '{}' has {} values per token, not n_embd {}: cannot capture {}",
                                                            arch, n, it->second.second, d, r.label));
                chosen = n;
                break;
            }
            if (chosen.empty()) {
                std::string list;
                for (const std::string& n : names) list += (list.empty() ? "'" : ", '") + n + "'";
                if (!twice.empty())
                    throw std::invalid_argument(fmt::format("architecture '{}' names two graph tensors '{}': cannot capture {} unambiguously",
                                                            arch, twice, r.label));
                std::string hint;
                if (r.label.rfind("resid_mid:", 0) == 0)
                    hint = " (a parallel block, where attention and MLP read the same input, has no residual stream between them)";
                throw std::invalid_argument(fmt::format("architecture '{}' does not compute {}: its graph has no tensor {}{}", arch, r.label, list, hint));
            }
            const std::string kind = r.label.substr(0, r.label.find(':'));
            if (const char* why = component_refusal(arch, kind); why && !ModelAccess::impl(*model).allow_unverified)
                throw std::invalid_argument(fmt::format("{} is refused for architecture '{}': {}; the raw tensor is tensor:{} "
                                                        "(docs/architectures.md)", r.label, arch, why, chosen));
            r.tensor = chosen;
            r.alternatives.clear();
        }
    }

    // The MoE blocks of the graph: those with one ffn_moe_topk-N ([k, tokens] I32), and for each
    // the last weight stage build_moe_ffn computes.
    void resolve_routing() {
        const std::string& arch = model->info().architecture;
        const int L = model->info().n_layer;
        for (int il = 0; il < L; ++il) {
            const auto it = probe_nodes.find(fmt::format("ffn_moe_topk-{}", il));
            if (it == probe_nodes.end() || it->second.first != 1) continue;
            std::string wname;
            for (const char* stage : {"ffn_moe_weights_scaled", "ffn_moe_weights_norm", "ffn_moe_weights_softmax", "ffn_moe_weights"}) {
                const auto w = probe_nodes.find(fmt::format("{}-{}", stage, il));
                if (w != probe_nodes.end() && w->second.first == 1) { wname = w->first; break; }
            }
            if (wname.empty())
                throw std::invalid_argument(fmt::format("architecture '{}': MoE block {} has no single ffn_moe_weights-{} tensor: cannot capture its routing", arch, il, il));
            const int k = int(it->second.second);
            if (routing.n_expert_used == 0) routing.n_expert_used = k;
            if (k != routing.n_expert_used)
                throw std::invalid_argument(fmt::format("architecture '{}': MoE blocks select different numbers of experts ({} and {})", arch, routing.n_expert_used, k));
            const auto pr = probe_nodes.find(fmt::format("ffn_moe_probs-{}", il));
            if (pr != probe_nodes.end()) routing.n_expert = std::max(routing.n_expert, int(pr->second.second));
            const int m = int(routing.blocks.size());
            routing.blocks.push_back(il);
            routing.weight_tensors.push_back(wname);
            route_want[it->first] = {m, false};
            route_want[wname] = {m, true};
        }
        if (routing.blocks.empty()) {
            for (int il = 0; il < L; ++il) {
                const auto it = probe_nodes.find(fmt::format("ffn_moe_topk-{}", il));
                if (it != probe_nodes.end())
                    throw std::invalid_argument(fmt::format("architecture '{}' runs {} routers in MoE block {} (ffn_moe_topk-{} appears {} times): "
                                                            "phasemap cannot tell their selections apart, so routing is not captured",
                                                            arch, it->second.first, il, il, it->second.first));
            }
            throw std::invalid_argument(fmt::format("architecture '{}' has no MoE block (no graph tensor ffn_moe_topk-N): routing needs an MoE model", arch));
        }
        if (routing.n_expert < routing.n_expert_used) routing.n_expert = routing.n_expert_used;
    }

    // Counts `rows` more rows of tensor t in this step (its first row's index in `base`) and returns
    // its bytes on the host, copied by device_copy when the tensor lives on a device; nullptr with
    // cb_error set when the tensor produced more rows than the step holds.
    const unsigned char* take_rows(ggml_tensor* t, int rows, int& base) {
        int& seen = rows_seen[t->name];
        base = seen;
        seen += rows;
        if (seen > rows_expected) {
            cb_error = fmt::format("tensor '{}' produced {} rows, expected {}", t->name, seen, rows_expected);
            return nullptr;
        }
        if (t->buffer == nullptr || ggml_backend_buffer_is_host(t->buffer)) return static_cast<const unsigned char*>(t->data);
        return device_copy.fetch(t);
    }

    // Copies the experts (I32) or weights (F32) of one MoE block: k values per row, read through
    // the strides ([k, rows] for the top-k view, [1, k, rows] for the weights).
    void on_routing(ggml_tensor* t) {
        if (!cb_error.empty()) return;
        const auto [m, is_w] = route_want.at(t->name);
        const int k = routing.n_expert_used;
        const size_t M = routing.blocks.size();
        int rows = 0;
        size_t s_j = 0, s_r = 0;
        if (t->ne[0] == k && t->ne[2] == 1 && t->ne[3] == 1) { rows = int(t->ne[1]); s_j = t->nb[0]; s_r = t->nb[1]; }
        else if (t->ne[0] == 1 && t->ne[1] == k && t->ne[3] == 1) { rows = int(t->ne[2]); s_j = t->nb[1]; s_r = t->nb[2]; }
        else {
            cb_error = fmt::format("routing tensor '{}' has shape [{}, {}, {}], expected {} values per token", t->name, t->ne[0], t->ne[1], t->ne[2], k);
            return;
        }
        if ((is_w && t->type != GGML_TYPE_F32) || (!is_w && t->type != GGML_TYPE_I32)) {
            cb_error = fmt::format("routing tensor '{}' has type {}", t->name, ggml_type_name(t->type));
            return;
        }
        int base = 0;
        const unsigned char* src = take_rows(t, rows, base);
        if (!src) return;
        for (int r = 0; r < rows; ++r)
            for (int j = 0; j < k; ++j) {
                const unsigned char* p = src + size_t(r) * s_r + size_t(j) * s_j;
                const size_t o = (size_t(base + r) * M + size_t(m)) * size_t(k) + size_t(j);
                if (is_w) std::memcpy(&route_weights[o], p, sizeof(float));
                else std::memcpy(&route_experts[o], p, sizeof(int32_t));
            }
    }

    void record_node(const ggml_tensor* t) {
        graph_names.insert(t->name);
        if (t->op == GGML_OP_UNARY) {
            const ggml_unary_op u = ggml_get_unary_op(t);
            if (u == GGML_UNARY_OP_GELU || u == GGML_UNARY_OP_GELU_ERF || u == GGML_UNARY_OP_GELU_QUICK) graph.gelu = true;
        } else if (t->op == GGML_OP_GLU) {
            const ggml_glu_op g = ggml_get_glu_op(t);
            if (g == GGML_GLU_OP_GEGLU || g == GGML_GLU_OP_GEGLU_ERF || g == GGML_GLU_OP_GEGLU_QUICK) graph.gelu = true;
        }
    }

    void on_edit(ggml_tensor* t, int blk) {
        if (!cb_error.empty()) return;
        if (t->type != GGML_TYPE_F32 || t->ne[0] != d || t->ne[3] != 1 || t->nb[0] != sizeof(float)) {
            cb_error = fmt::format("cannot edit tensor '{}' (type {}, shape [{}, {}, {}])", t->name, ggml_type_name(t->type), t->ne[0],
                                   t->ne[1], t->ne[2]);
            return;
        }
        const int rows = int(t->ne[1] * t->ne[2]);
        int& seen = edit_rows_seen[size_t(blk)];
        const int base = seen;
        seen += rows;
        if (seen > edit_rows_expected) {
            cb_error = fmt::format("tensor '{}' produced {} rows, expected {}", t->name, seen, edit_rows_expected);
            return;
        }
        const bool host = t->buffer == nullptr || ggml_backend_buffer_is_host(t->buffer);
        for (const RowEdit& e : edits[size_t(blk)]) {
            if (e.row < base || e.row >= base + rows) continue;
            const int r = e.row - base;
            const size_t off = size_t(r % t->ne[1]) * t->nb[1] + size_t(r / t->ne[1]) * t->nb[2];
            try {
                if (host) {
                    float* h = reinterpret_cast<float*>(static_cast<unsigned char*>(t->data) + off);
                    apply_intervention(*e.iv, std::span<float>(h, size_t(d)), e.t, e.key, e.st);
                } else {
                    edit_row.resize(size_t(d));
                    ggml_backend_tensor_get(t, edit_row.data(), off, size_t(d) * sizeof(float));
                    apply_intervention(*e.iv, edit_row, e.t, e.key, e.st);
                    ggml_backend_tensor_set(t, edit_row.data(), off, size_t(d) * sizeof(float));
                }
            } catch (...) {
                cb_exception = std::current_exception();  // rethrown by decode()
                return;
            }
        }
    }

    void on_tensor(ggml_tensor* t, bool embd) {
        if (!cb_error.empty()) return;
        const auto it = want.find(t->name);
        if (!embd && it == want.end()) return;
        const std::vector<int>& slots = embd ? embd_slots : it->second;
        if (embd && recording) graph.embd_tensor = t->name;  // the last one computed wins, as for the rows
        if (t->ne[0] != d || t->ne[2] != 1 || t->ne[3] != 1) {
            // A 3-d view of [d, tokens] (recurrent graphs reshape to [d, n_seq_tokens, n_seqs]).
            if (!(t->ne[0] == d && t->ne[3] == 1)) {
                cb_error = fmt::format("tensor '{}' has shape [{}, {}, {}], expected [{}, tokens]", t->name, t->ne[0], t->ne[1], t->ne[2], d);
                return;
            }
        }
        if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16) {
            cb_error = fmt::format("tensor '{}' has type {}, expected f32 or f16", t->name, ggml_type_name(t->type));
            return;
        }
        const int rows = int(t->ne[1] * t->ne[2]);
        int base = 0;
        const unsigned char* src = take_rows(t, rows, base);
        if (!src) return;
        for (int r = 0; r < rows; ++r) {
            const int64_t i1 = r % t->ne[1], i2 = r / t->ne[1];
            const unsigned char* row = src + i1 * t->nb[1] + i2 * t->nb[2];
            for (int slot : slots) {
                float* dst = step.data() + (size_t(base + r) * Lp + size_t(slot)) * size_t(d);
                if (t->type == GGML_TYPE_F32 && t->nb[0] == sizeof(float)) {
                    std::memcpy(dst, row, size_t(d) * sizeof(float));
                } else if (t->type == GGML_TYPE_F32) {
                    for (int j = 0; j < d; ++j) std::memcpy(dst + j, row + j * t->nb[0], sizeof(float));
                } else {
                    for (int j = 0; j < d; ++j) {
                        ggml_fp16_t h;
                        std::memcpy(&h, row + j * t->nb[0], sizeof h);
                        dst[j] = ggml_fp16_to_fp32(h);
                    }
                }
            }
        }
    }

    // Sets up EngineOptions::output_stats: with graph (automatic: off the CPU backend), every slot
    // starts with a statistics chain (llama_set_sampler); an output device that cannot run its
    // ops (automatic: the CPU backend) leaves the host path.
    void init_output_stats() {
        facts.output_stats = output_stats_name(OutputStats::host);
        if (opt.output_stats == OutputStats::host) return;
        ostats = std::make_unique<OutputStatsGraph>(opt.save_logits, opt.output_stats == OutputStats::graph);
        chains.v.assign(size_t(opt.n_parallel), nullptr);
        for (int k = 0; k < opt.n_parallel; ++k) set_slot_stats(k, true);
        if (!ostats->supported()) {
            for (int k = 0; k < opt.n_parallel; ++k) set_slot_stats(k, false);
            ostats.reset();
            return;
        }
        facts.output_stats = output_stats_name(OutputStats::graph);
    }

    // Slot k's statistics in the graph (attach its chain) or on the host (detach it). llama.cpp
    // re-reserves its scheduler at the next decode after either, so the engine switches a slot
    // only when the sequence admitted to it needs the other path.
    void set_slot_stats(int k, bool graph) {
        if (!ostats) return;
        llama_sampler*& c = chains.v[size_t(k)];
        if (graph == (c != nullptr)) return;
        if (graph) {
            llama_sampler* n = ostats->make_chain();
            if (!llama_set_sampler(ctx, k, n)) {
                llama_sampler_free(n);
                throw std::runtime_error("llama.cpp did not attach the output-statistics sampler (use --output-stats host)");
            }
            c = n;
        } else {
            llama_set_sampler(ctx, k, nullptr);
            llama_sampler_free(c);
            c = nullptr;
        }
    }
    bool graph_stats(int k) const { return ostats && chains.v[size_t(k)] != nullptr; }

    // The statistics of output row i of the last decode, from the graph (slot in graph mode).
    metrics::TokenProbStats graph_row_stats(int i) const {
        const float* g = llama_get_sampled_probs_ith(ctx, i);
        const llama_token* id = llama_get_sampled_candidates_ith(ctx, i);
        if (!g || !id || llama_get_sampled_probs_count_ith(ctx, i) != uint32_t(kGraphStatFloats) ||
            llama_get_sampled_candidates_count_ith(ctx, i) != 1)
            throw std::runtime_error("llama.cpp returned no output statistics for a sequence (--output-stats graph)");
        return OutputStatsGraph::combine(g, *id, model->info().n_vocab);
    }
    // The full logits of output row i: the graph's copy for a slot in graph mode (save_logits).
    const float* row_logits(int i, int k) const {
        if (!graph_stats(k)) return llama_get_logits_ith(ctx, i);
        const float* p = llama_get_sampled_logits_ith(ctx, i);
        if (p && llama_get_sampled_logits_count_ith(ctx, i) != uint32_t(model->info().n_vocab)) return nullptr;
        return p;
    }

    // Decodes `batch`; when `capture` is set, fills `step` for its n_tokens rows.
    // Edits listed in `edits` apply to this decode's rows (cleared afterwards).
    void decode(llama_batch& batch, bool capture) {
        edit_on = false;
        for (const auto& e : edits)
            if (!e.empty()) edit_on = true;
        if (edit_on) {
            edit_rows_seen.assign(edits.size(), 0);
            edit_rows_expected = batch.n_tokens;
            cb_error.clear();
        }
        capture_on = capture && (Lp > 0 || !route_want.empty());
        if (capture_on) {
            rows_expected = batch.n_tokens;
            step.assign(size_t(batch.n_tokens) * Lp * size_t(d), 0.0f);
            if (!route_want.empty()) {
                const size_t n = size_t(batch.n_tokens) * routing.blocks.size() * size_t(routing.n_expert_used);
                route_experts.assign(n, -1);
                route_weights.assign(n, 0.0f);
            }
            rows_seen.clear();
            cb_error.clear();
        }
        recording = capture_on && !graph.recorded;
        take_llama_errors();
        cb_exception = nullptr;
        const int rc = llama_decode(ctx, batch);
        capture_on = false;
        if (recording) {
            recording = false;
            graph.recorded = true;
            graph.node_names.assign(graph_names.begin(), graph_names.end());
            graph_names.clear();
        }
        if (edit_on) {
            edit_on = false;
            for (auto& e : edits) e.clear();
            if (cb_exception) {
                take_llama_errors();
                std::rethrow_exception(std::exchange(cb_exception, nullptr));
            }
            if (rc == 0 && !cb_error.empty()) throw std::runtime_error("intervention failed: " + cb_error);
        }
        if (rc != 0) {
            const std::string why = take_llama_errors();
            throw std::runtime_error(fmt::format("llama_decode failed (code {}){}{}", rc, why.empty() ? "" : ": ", why));
        }
        if (!capture) return;
        if (!cb_error.empty()) throw std::runtime_error("capture failed: " + cb_error);
        for (const auto& [name, slots] : want) {
            const auto it = rows_seen.find(name);
            if (it == rows_seen.end() || it->second != batch.n_tokens)
                throw std::runtime_error(fmt::format(
                    "architecture '{}' did not expose graph tensor '{}' for every token ({} of {} rows): cannot capture {}",
                    model->info().architecture, name, it == rows_seen.end() ? 0 : it->second, batch.n_tokens,
                    layers[size_t(slots.front())].label));
        }
        for (const auto& [name, slot] : route_want) {
            const auto it = rows_seen.find(name);
            if (it == rows_seen.end() || it->second != batch.n_tokens)
                throw std::runtime_error(fmt::format("architecture '{}' did not expose routing tensor '{}' for every token ({} of {} rows)",
                                                     model->info().architecture, name, it == rows_seen.end() ? 0 : it->second, batch.n_tokens));
        }
        if (!embd_slots.empty()) {
            bool any = false;
            for (const char* e : kEmbdNames) {
                const auto it = rows_seen.find(e);
                if (it != rows_seen.end() && it->second == batch.n_tokens) any = true;
            }
            if (!any)
                throw std::runtime_error(fmt::format("architecture '{}' did not expose its embedding tensor: cannot capture hf:0",
                                                     model->info().architecture));
        }
    }
};

Engine::Engine(std::shared_ptr<Model> model, const EngineOptions& opt) : impl_(std::make_unique<Impl>()) {
    Impl& s = *impl_;
    s.model = std::move(model);
    s.opt = opt;
    const ModelInfo& mi = s.model->info();
    if (opt.n_parallel < 1) throw std::invalid_argument("--parallel must be at least 1");
    s.layers = resolve_layers(opt.layers, mi.n_layer);
    s.d = mi.n_embd;
    s.Lp = s.layers.size();
    // Sizes from options, checked against the model before llama.cpp allocates anything.
    if (opt.n_ctx < 0) throw std::invalid_argument(fmt::format("--ctx {} must be ≥ 0 (0 = automatic)", opt.n_ctx));
    if (mi.n_ctx_train > 0 && opt.n_ctx > mi.n_ctx_train)
        throw std::invalid_argument(fmt::format("--ctx {} exceeds the model's training context of {} tokens", opt.n_ctx, mi.n_ctx_train));
    if (opt.n_threads < 0 || opt.n_threads > 4096)
        throw std::invalid_argument(fmt::format("--threads {} must be a whole number from 0 to 4096", opt.n_threads));
    if (opt.n_parallel > 4096) throw std::invalid_argument(fmt::format("--parallel {} must be at most 4096", opt.n_parallel));
    if (opt.workers) check_poll(opt.workers->poll);
    s.n_ctx_seq = opt.n_ctx > 0 ? opt.n_ctx : default_context(mi);
    s.n_batch = std::max(512, opt.n_parallel);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = uint32_t(s.n_ctx_seq) * uint32_t(opt.n_parallel);
    cp.n_batch = uint32_t(s.n_batch);
    cp.n_ubatch = uint32_t(s.n_batch);
    cp.n_seq_max = uint32_t(opt.n_parallel);
    const int threads = opt.n_threads > 0 ? opt.n_threads : default_threads();
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.cb_eval = &Impl::eval_cb;
    cp.cb_eval_user_data = &s;
    cp.kv_unified = true;
    cp.n_outputs_max_per_seq = 1;  // one output row per sequence and decode (backend samplers)
    cp.no_perf = true;
    cp.embeddings = false;
    if (opt.precision == Precision::exact) {
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    take_llama_errors();
    s.ctx = llama_init_from_model(ModelAccess::impl(*s.model).model, cp);
    if (!s.ctx) {
        const std::string why = take_llama_errors();
        throw std::runtime_error(fmt::format("cannot create a llama.cpp context (n_ctx {} × {} sequences){}{}", s.n_ctx_seq,
                                             opt.n_parallel, why.empty() ? "" : ": ", why));
    }
    // An explicit threadpool (poll level, priority; threads.cpp) instead of the one ggml makes for
    // each graph when none is attached: the same thread count, so results are bitwise the same.
    s.threadpool = make_threadpool(threads, opt.workers ? *opt.workers : thread_defaults());
    llama_attach_threadpool(s.ctx, s.threadpool, s.threadpool);
    // The model's LoRA adapters (ModelOptions::adapters), with their scales.
    ModelAccess::Impl& mimpl = ModelAccess::impl(*s.model);
    if (!mimpl.loras.empty()) {
        std::vector<float> scales = mimpl.lora_scales;
        llama_set_adapters_lora(s.ctx, mimpl.loras.data(), mimpl.loras.size(), scales.data());
    }
    s.init_output_stats();
    const bool comps = std::any_of(s.layers.begin(), s.layers.end(), [](const ResolvedLayer& r) { return r.component(); });
    if (comps || opt.routing) s.probe();
    if (comps) s.resolve_components();
    if (opt.routing) s.resolve_routing();
    s.probe_nodes.clear();
    for (size_t i = 0; i < s.layers.size(); ++i) {
        if (s.layers[i].tensor == "embd") s.embd_slots.push_back(int(i));
        else s.want[s.layers[i].tensor].push_back(int(i));
    }
    s.facts.precision = precision_name(opt.precision);
    s.facts.n_ctx = s.n_ctx_seq;
    s.facts.n_batch = s.n_batch;
    s.facts.type_k = ggml_type_name(cp.type_k);
    s.facts.type_v = ggml_type_name(cp.type_v);
    s.facts.flash_attn = llama_flash_attn_type_name(cp.flash_attn_type);
    s.facts.n_threads = threads;
}

Engine::~Engine() = default;

const std::vector<ResolvedLayer>& Engine::layers() const { return impl_->layers; }
const EngineFacts& Engine::facts() const { return impl_->facts; }
const GraphFacts& Engine::graph_facts() const { return impl_->graph; }
const RoutingLayout& Engine::routing() const { return impl_->routing; }

namespace {

struct BatchGuard {
    llama_batch b;
    explicit BatchGuard(int n) : b(llama_batch_init(n, 0, 1)) {}
    ~BatchGuard() { llama_batch_free(b); }
    void clear() { b.n_tokens = 0; }
    void add(llama_token id, llama_pos pos, llama_seq_id seq, bool logits) {
        const int i = b.n_tokens++;
        b.token[i] = id;
        b.pos[i] = pos;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = seq;
        b.logits[i] = logits;
    }
};

struct SamplerGuard {
    llama_sampler* s = nullptr;
    SamplerGuard() = default;
    SamplerGuard(SamplerGuard&& o) noexcept : s(o.s) { o.s = nullptr; }
    SamplerGuard& operator=(SamplerGuard&& o) noexcept {
        std::swap(s, o.s);
        return *this;
    }
    ~SamplerGuard() {
        if (s) llama_sampler_free(s);
    }
};

SamplerGuard make_sampler(const SamplingOptions& so) {
    SamplerGuard g;
    g.s = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (so.temperature <= 0.0f) {
        llama_sampler_chain_add(g.s, llama_sampler_init_greedy());
    } else {
        if (so.top_k > 0) llama_sampler_chain_add(g.s, llama_sampler_init_top_k(so.top_k));
        if (so.top_p < 1.0f) llama_sampler_chain_add(g.s, llama_sampler_init_top_p(so.top_p, 1));
        llama_sampler_chain_add(g.s, llama_sampler_init_temp(so.temperature));
        llama_sampler_chain_add(g.s, llama_sampler_init_dist(uint32_t(so.seed ^ (so.seed >> 32))));
    }
    return g;
}

}  // namespace

// Tokenises a request: chat template applied when asked; BOS per the vocabulary's settings.
static std::vector<int32_t> request_tokens(const Model& m, const Request& r, std::string& text) {
    if (r.chat) {
        text = r.messages.empty() ? m.apply_chat_template(r.prompt) : m.apply_chat_template(r.messages);
        std::vector<int32_t> ids = m.tokenize(text, true, true);
        // A template that writes the BOS text itself must not get a second BOS.
        if (ids.size() >= 2 && ids[0] == ids[1] && ids[0] == m.tokenize("", true).front()) ids.erase(ids.begin());
        return ids;
    }
    text = r.prompt;
    return m.tokenize(text, true, false);
}

Request make_request(std::string prompt, bool chat, int n_predict, const SamplingOptions& sampling) {
    Request r;
    r.prompt = std::move(prompt);
    r.chat = chat;
    r.n_predict = n_predict;
    r.sampling = sampling;
    return r;
}

int context_for(const Model& m, std::span<const Request> requests) {
    size_t need = 1;
    std::string text;
    for (const Request& r : requests) need = std::max(need, request_tokens(m, r, text).size() + size_t(std::max(r.n_predict, 1)));
    const size_t padded = (need + 255) / 256 * 256;
    return int(std::min<size_t>(padded, size_t(default_context(m.info()))));
}

namespace {

// A request checked against the model and engine, ready to start (Engine::validate's work).
struct Prepared {
    std::vector<int32_t> prompt;
    std::string text;
    std::vector<Intervention> ivs;  // resolved
};

}  // namespace

// Checks one request against the model and the engine; throws std::runtime_error with the reason.
static Prepared prepare_request(const Engine::Impl& s, const Request& r) {
    const Model& m = *s.model;
    if (r.prompt.empty()) throw std::runtime_error("the prompt is empty");
    if (r.n_predict < 1) throw std::runtime_error(fmt::format("-n must be at least 1 (got {})", r.n_predict));
    if (r.sampling.temperature < 0) throw std::runtime_error("temperature must be ≥ 0");
    if (r.sampling.top_p <= 0 || r.sampling.top_p > 1) throw std::runtime_error("top-p must be in (0, 1]");
    Prepared p;
    p.ivs = r.interventions;
    try { resolve_interventions(p.ivs, m.info().n_layer, s.d); }
    catch (const std::exception& e) { throw std::runtime_error(e.what()); }
    p.prompt = request_tokens(m, r, p.text);
    if (p.prompt.empty()) throw std::runtime_error("the prompt tokenises to no tokens");
    if (int(p.prompt.size()) >= s.n_ctx_seq)
        throw std::runtime_error(fmt::format("the prompt has {} tokens, the context holds {} (use --ctx to enlarge it)", p.prompt.size(), s.n_ctx_seq));
    return p;
}

namespace {

// One sequence: an admitted request being generated in one slot (llama seq id), from its
// prefill to its RunEnd.
struct Sequence {
    Admission adm;                           // owns the request
    size_t req;                              // run index (also the intervention key)
    const Request* request;                  // &adm.request
    RunSink* sink;
    SamplerGuard smpl;
    bool greedy;                             // temperature 0: the arg-max, without llama.cpp's sampler
    std::vector<int32_t> prompt;
    llama_token next;                        // token to feed at the next step
    llama_pos pos;                           // its position
    int generated = 0;                       // = t of the next generated token
    bool begun = false;                      // sink->begin called
    bool done = false;
    std::vector<int32_t> out;
    std::vector<Intervention> ivs;           // resolved; the controller may append
    std::vector<InterventionState> ivst;     // one per intervention
    std::vector<Insertion> insertions;
    std::vector<std::string> events;
    std::vector<int32_t> pending;            // inserted tokens to decode before the next step
};

// The engine loop's state: n_parallel slots, each empty or holding one sequence; sequences join
// (prefill) and leave (slot memory removed) between lock-step decode steps.
struct Loop {
    Engine::Impl& s;
    RequestSource& src;
    const Model& m;
    const int V, L;
    BatchGuard& batch;
    std::vector<std::unique_ptr<Sequence>> slots;
    std::vector<int> active;                 // slots of the current step, in batch-row order
    // per batch row of the current step
    std::vector<const float*> logits;
    std::vector<int32_t> sampled;
    std::vector<metrics::TokenProbStats> stats;
    std::vector<int> host_rows;              // rows whose statistics the host computes

    int n_busy() const {
        return int(std::count_if(slots.begin(), slots.end(), [](const auto& q) { return q != nullptr; }));
    }

    bool prefill_edits(const Sequence& q) const {
        return std::any_of(q.ivs.begin(), q.ivs.end(), [&](const Intervention& iv) { return iv.prefill && iv.block < L - 1; });
    }

    // Removes slot k's sequence and its memory.
    void release(int k) {
        llama_memory_seq_rm(llama_get_memory(s.ctx), k, -1, -1);
        slots[size_t(k)].reset();
    }

    // A sequence that cannot go on: the source hears of it first (generate() rethrows there),
    // then its sink ends with stop reason "error" and its slot is freed.
    void fail(int k, std::exception_ptr err) {
        Sequence& q = *slots[size_t(k)];
        if (!q.done) {
            q.done = true;
            src.failed(q.adm, err);
            if (q.begun) {
                RunEnd e;
                e.stop_reason = "error";
                try { std::rethrow_exception(err); }
                catch (const std::exception& x) { e.error = x.what(); }
                catch (...) { e.error = "unknown error"; }
                e.n_generated = q.generated;
                e.text = m.detokenize(q.out);
                e.insertions = q.insertions;
                e.events = q.events;
                try { q.sink->end(e); } catch (...) {}
            }
        }
        release(k);
    }

    // Takes new requests while a slot is free; returns the slots filled, or nullopt when the
    // source ends the loop (asked while idle).
    std::optional<std::vector<int>> admit() {
        std::vector<int> fresh;
        for (;;) {
            int k = 0;
            while (k < int(slots.size()) && slots[size_t(k)]) ++k;
            if (k == int(slots.size())) break;
            const bool idle = n_busy() == 0;
            std::optional<Admission> a = src.next(idle);
            if (!a) {
                if (idle) return std::nullopt;
                break;
            }
            Prepared p;
            try { p = prepare_request(s, a->request); }
            catch (...) { src.failed(*a, std::current_exception()); continue; }
            auto q = std::make_unique<Sequence>();
            q->adm = std::move(*a);
            q->req = q->adm.run_index;
            q->request = &q->adm.request;
            q->sink = q->adm.sink;
            q->smpl = make_sampler(q->request->sampling);
            q->greedy = q->request->sampling.temperature <= 0.0f;
            s.set_slot_stats(k, q->greedy);
            q->prompt = std::move(p.prompt);
            q->next = q->prompt.back();
            q->pos = llama_pos(q->prompt.size() - 1);
            q->ivs = std::move(p.ivs);
            q->ivst.resize(q->ivs.size());
            slots[size_t(k)] = std::move(q);
            Sequence& sq = *slots[size_t(k)];
            try {
                sq.begun = true;
                sq.sink->begin(RunStart{sq.req, p.text, sq.prompt, s.layers, s.d, V, s.routing,
                                        output_stats_name(s.ostats && sq.greedy ? OutputStats::graph : OutputStats::host)});
            } catch (...) {
                sq.begun = false;
                fail(k, std::current_exception());
                continue;
            }
            fresh.push_back(k);
        }
        return fresh;
    }

    // Prefills all but the last prompt token of each fresh sequence, without capture. With
    // EngineOptions::share_prompt_prefix a sequence whose prompt tokens equal another's (neither
    // with prefill edits) copies that prefix: from a fresh sequence of the same admission, or from
    // a running one (its cells up to the prompt's second-to-last position).
    void prefill(const std::vector<int> fresh) {
        const int n = int(fresh.size());
        std::vector<int> fork_from(size_t(n), -1);      // slot to copy from
        std::vector<bool> fork_running(size_t(n), false);
        if (s.opt.share_prompt_prefix && !m.info().recurrent)
            for (int i = 0; i < n; ++i) {
                const Sequence& qi = *slots[size_t(fresh[size_t(i)])];
                if (prefill_edits(qi)) continue;
                for (int j = 0; j < i && fork_from[size_t(i)] < 0; ++j) {
                    const Sequence& qj = *slots[size_t(fresh[size_t(j)])];
                    if (fork_from[size_t(j)] < 0 && qj.prompt == qi.prompt && !prefill_edits(qj)) fork_from[size_t(i)] = fresh[size_t(j)];
                }
                for (int k = 0; k < int(slots.size()) && fork_from[size_t(i)] < 0; ++k) {
                    const Sequence* qk = slots[size_t(k)].get();
                    if (!qk || std::find(fresh.begin(), fresh.end(), k) != fresh.end() || qk->done) continue;
                    if (qk->prompt == qi.prompt && !prefill_edits(*qk)) {
                        fork_from[size_t(i)] = k;
                        fork_running[size_t(i)] = true;
                    }
                }
            }
        batch.clear();
        for (int i = 0; i < n; ++i) {
            if (fork_from[size_t(i)] >= 0) continue;
            const int k = fresh[size_t(i)];
            Sequence& q = *slots[size_t(k)];
            const auto& ids = q.prompt;
            for (size_t j = 0; j + 1 < ids.size(); ++j) {
                if (batch.b.n_tokens == s.n_batch) {
                    s.decode(batch.b, false);
                    batch.clear();
                }
                for (size_t e = 0; e < q.ivs.size(); ++e)
                    if (q.ivs[e].prefill && q.ivs[e].block < L - 1)
                        s.edits[size_t(q.ivs[e].block)].push_back(RowEdit{batch.b.n_tokens, &q.ivs[e], &q.ivst[e], -1 - int(j), uint64_t(q.req)});
                batch.add(ids[j], llama_pos(j), k, false);
            }
        }
        if (batch.b.n_tokens > 0) s.decode(batch.b, false);
        llama_memory_t mem = llama_get_memory(s.ctx);
        for (int i = 0; i < n; ++i) {
            const int from = fork_from[size_t(i)];
            if (from < 0) continue;
            const int k = fresh[size_t(i)];
            const llama_pos keep = llama_pos(slots[size_t(k)]->prompt.size() - 1);
            llama_memory_seq_cp(mem, from, k, 0, fork_running[size_t(i)] ? keep : -1);
        }
    }

    // The batch of the next step: one token per running sequence, each with the edits active at
    // its step; a cancelled sequence ends here. False when no sequence runs.
    bool queue_step() {
        active.clear();
        batch.clear();
        for (int k = 0; k < int(slots.size()); ++k) {
            if (!slots[size_t(k)]) continue;
            Sequence& q = *slots[size_t(k)];
            if (q.request->cancel && q.request->cancel->load(std::memory_order_relaxed)) {
                end_sequence(k, "cancelled");
                continue;
            }
            const int row = int(active.size());
            active.push_back(k);
            const int t = q.generated;
            for (size_t e = 0; e < q.ivs.size(); ++e) {
                const Intervention& iv = q.ivs[e];
                const bool use = iv.op == InterventionOp::damp ? (t >= iv.t_begin - 1 && t < iv.t_end) : iv.active_at(t);
                if (use) s.edits[size_t(iv.block)].push_back(RowEdit{row, &iv, &q.ivst[e], t, uint64_t(q.req)});
            }
            batch.add(q.next, q.pos, k, true);
        }
        return !active.empty();
    }

    // The token of every row and its statistics. A slot in graph mode (a greedy sequence with
    // --output-stats graph) reads the few floats the graph computed (output_stats.hpp), and its
    // logits only with save_logits. The other rows read their full logits: stateful samplers run
    // first, serially, in llama.cpp, then a float64 softmax over the vocabulary per row, spread
    // over the engine's threads. Greedy sequences take the first arg-max (llama.cpp's greedy rule).
    void sample() {
        const int na = int(active.size());
        logits.resize(size_t(na));
        sampled.resize(size_t(na));
        stats.resize(size_t(na));
        host_rows.clear();
        for (int bi = 0; bi < na; ++bi) {
            const int k = active[size_t(bi)];
            Sequence& q = *slots[size_t(k)];
            logits[size_t(bi)] = nullptr;
            if (s.opt.save_logits || !s.graph_stats(k)) {
                logits[size_t(bi)] = s.row_logits(bi, k);
                if (!logits[size_t(bi)]) throw std::runtime_error("llama.cpp returned no logits");
            }
            if (s.graph_stats(k)) {
                stats[size_t(bi)] = s.graph_row_stats(bi);
                sampled[size_t(bi)] = metrics::kChosenIsTop1;
                continue;
            }
            sampled[size_t(bi)] = q.greedy ? metrics::kChosenIsTop1 : llama_sampler_sample(q.smpl.s, s.ctx, bi);
            host_rows.push_back(bi);
        }
        const int nh = int(host_rows.size());
#pragma omp parallel for num_threads(s.facts.n_threads) schedule(static) if (nh > 1 && s.facts.n_threads > 1)
        for (int j = 0; j < nh; ++j) {
            const size_t bi = size_t(host_rows[size_t(j)]);
            stats[bi] = metrics::token_prob_stats(std::span<const float>(logits[bi], size_t(V)), sampled[bi]);
        }
    }

    // The captured [L', d] states of batch row bi in this step (empty without captured layers).
    std::span<const float> states(size_t bi) const {
        return s.Lp ? std::span<const float>(s.step.data() + bi * s.Lp * size_t(s.d), s.Lp * size_t(s.d)) : std::span<const float>();
    }

    // Streams the token of row bi to its sequence's sink and appends it to the sequence.
    TokenRecord emit(Sequence& q, size_t bi) {
        // NaN/inf logits (NaN weights) would decode token 0 forever: say so instead.
        if (!std::isfinite(stats[bi].entropy) || !std::isfinite(stats[bi].top1))
            throw std::runtime_error(fmt::format("the model's logits are not finite at generated token {} (NaN or inf in the "
                                                 "weights or activations); nothing was decoded from them", q.generated));
        const llama_token id = q.greedy ? stats[bi].top1_id : sampled[bi];
        TokenRecord rec;
        rec.t = q.generated;
        rec.id = id;
        rec.text = m.token_text(id);
        rec.position = q.pos;
        rec.stats = stats[bi];
        if (!s.route_want.empty()) {
            const size_t mk = s.routing.blocks.size() * size_t(s.routing.n_expert_used);
            rec.experts.assign(s.route_experts.begin() + long(bi * mk), s.route_experts.begin() + long((bi + 1) * mk));
            rec.expert_weights.assign(s.route_weights.begin() + long(bi * mk), s.route_weights.begin() + long((bi + 1) * mk));
        }
        q.sink->token(rec, states(bi), s.opt.save_logits ? std::span<const float>(logits[bi], size_t(V)) : std::span<const float>());
        q.out.push_back(id);
        ++q.generated;
        q.next = id;
        ++q.pos;
        return rec;
    }

    // Why the sequence stops after its latest token ("" when it goes on).
    std::string stop_reason(const Sequence& q) const {
        if (m.is_eog(q.next)) return "eog";
        if (q.generated >= q.request->n_predict) return "length";
        if (q.pos >= s.n_ctx_seq) return "context";
        return "";
    }

    // The controller's action after token `rec`: events, added interventions, stop, or guard text
    // queued for decoding. Returns the stop reason ("" when the sequence goes on).
    std::string monitor_action(Sequence& q, const TokenRecord& rec, std::span<const float> st) {
        StepAction act = q.request->controller->after_token(rec, st);
        for (auto& ev : act.events) q.events.push_back(fmt::format("t={}: {}", rec.t, ev));
        if (!act.add_interventions.empty()) {
            try { resolve_interventions(act.add_interventions, L, s.d); }
            catch (const std::exception& e) { throw std::runtime_error(fmt::format("monitor action: {}", e.what())); }
            for (auto& iv : act.add_interventions) {
                q.ivs.push_back(std::move(iv));
                q.ivst.emplace_back();
            }
        }
        if (act.stop) return act.stop_reason.empty() ? "monitor" : act.stop_reason;
        if (act.insert_text.empty()) return "";
        std::vector<int32_t> ins = m.tokenize(act.insert_text, false, false);
        if (ins.empty()) return "";
        if (ins.size() > size_t(s.n_batch - 1))
            throw std::runtime_error(fmt::format("guard text of {} tokens exceeds the batch size {}", ins.size(), s.n_batch - 1));
        if (q.pos + int(ins.size()) >= s.n_ctx_seq) return "context";
        Insertion in;
        in.after_t = rec.t;
        in.position = q.pos + 1;
        in.ids = ins;
        in.text = m.detokenize(ins);
        in.text_offset = m.detokenize(q.out).size();
        q.insertions.push_back(std::move(in));
        q.pending = std::move(ins);
        return "";
    }

    // Ends slot k's sequence with `reason` and frees the slot.
    void end_sequence(int k, const std::string& reason) {
        Sequence& q = *slots[size_t(k)];
        q.done = true;
        RunEnd e;
        e.stop_reason = reason;
        e.n_generated = q.generated;
        e.text = m.detokenize(q.out);
        e.insertions = q.insertions;
        e.events = q.events;
        try { q.sink->end(e); }
        catch (...) {
            q.done = false;
            q.begun = false;  // its end ran (and threw): the source hears of it, the sink is not called again
            fail(k, std::current_exception());
            return;
        }
        release(k);
    }

    // Guard text: decodes [sampled token, inserted tokens except the last] into each sequence's
    // context; the last inserted token is fed at the next captured step and so becomes the
    // emitting position of the next generated token.
    void decode_insertions() {
        batch.clear();
        std::vector<int> in_batch;
        for (int k : active) {
            if (!slots[size_t(k)]) continue;
            Sequence& q = *slots[size_t(k)];
            if (q.done || q.pending.empty()) continue;
            if (batch.b.n_tokens + int(q.pending.size()) > s.n_batch && batch.b.n_tokens > 0) {
                s.decode(batch.b, false);
                batch.clear();
            }
            batch.add(q.next, q.pos, k, false);
            for (size_t j = 0; j + 1 < q.pending.size(); ++j) batch.add(q.pending[j], q.pos + 1 + llama_pos(j), k, false);
            q.pos += llama_pos(q.pending.size());
            q.next = q.pending.back();
            q.pending.clear();
        }
        if (batch.b.n_tokens > 0) s.decode(batch.b, false);
    }

    // A failure of a whole decode: every sequence in `ks` fails with it.
    void fail_all(const std::vector<int>& ks, std::exception_ptr err) {
        for (int k : ks)
            if (slots[size_t(k)]) fail(k, err);
    }

    std::vector<int> busy() const {
        std::vector<int> r;
        for (int k = 0; k < int(slots.size()); ++k)
            if (slots[size_t(k)]) r.push_back(k);
        return r;
    }
};

// generate()'s request source: the requests in order, each admitted when a slot is free; any
// failure is rethrown (generate() stops at the first error, as it validated everything first).
struct SpanSource final : RequestSource {
    std::span<const Request> requests;
    const std::function<RunSink&(size_t)>& sink_for;
    size_t next_i = 0;
    SpanSource(std::span<const Request> r, const std::function<RunSink&(size_t)>& f) : requests(r), sink_for(f) {}
    std::optional<Admission> next(bool) override {
        if (next_i == requests.size()) return std::nullopt;
        Admission a{requests[next_i], &sink_for(next_i), next_i};
        ++next_i;
        return a;
    }
    void failed(const Admission&, std::exception_ptr err) override { std::rethrow_exception(err); }
};

}  // namespace

void Engine::validate(const Request& r) const { (void)prepare_request(*impl_, r); }

void Engine::serve(RequestSource& src) {
    Impl& s = *impl_;
    const Model& m = *s.model;
    s.edits.assign(size_t(m.info().n_layer), {});
    llama_memory_clear(llama_get_memory(s.ctx), true);
    const int P = s.opt.n_parallel;
    BatchGuard batch(std::max(s.n_batch, P));
    Loop run{s, src, m, m.info().n_vocab, m.info().n_layer, batch, {}, {}, {}, {}, {}, {}};
    run.slots.resize(size_t(P));
    // Whatever ends the loop (the source's end, or an exception a source rethrows), the memory of
    // every slot is cleared for the next call.
    struct Clear {
        Impl& s;
        ~Clear() {
            for (auto& e : s.edits) e.clear();
            llama_memory_clear(llama_get_memory(s.ctx), true);
        }
    } clear{s};
    for (;;) {
        // Admission between steps: new sequences take the free slots and are prefilled.
        std::optional<std::vector<int>> fresh = run.admit();
        if (!fresh) return;
        if (!fresh->empty()) {
            try { run.prefill(*fresh); }
            catch (...) {
                for (auto& e : s.edits) e.clear();
                run.fail_all(*fresh, std::current_exception());
            }
        }
        // Lock-step decoding (METRICS.md §1): per step, each running sequence feeds one token
        // with the edits of its step t; the forward pass captures the rows; then per sequence the
        // next token is sampled and streamed, and the monitor may act on it.
        if (!run.queue_step()) continue;
        try {
            s.decode(batch.b, true);
            run.sample();
        } catch (...) {
            for (auto& e : s.edits) e.clear();
            run.fail_all(run.active, std::current_exception());
            continue;
        }
        for (size_t bi = 0; bi < run.active.size(); ++bi) {
            const int k = run.active[bi];
            Sequence& q = *run.slots[size_t(k)];
            std::string reason;
            try {
                const TokenRecord rec = run.emit(q, bi);
                reason = run.stop_reason(q);
                if (reason.empty() && q.request->controller) reason = run.monitor_action(q, rec, run.states(bi));
            } catch (...) {
                run.fail(k, std::current_exception());
                continue;
            }
            if (!reason.empty()) run.end_sequence(k, reason);
        }
        try { run.decode_insertions(); }
        catch (...) { run.fail_all(run.busy(), std::current_exception()); }
    }
}

void Engine::generate(std::span<const Request> requests, const std::function<RunSink&(size_t)>& sink_for) {
    // Validate everything before decoding anything.
    for (size_t i = 0; i < requests.size(); ++i) {
        try { validate(requests[i]); }
        catch (const std::exception& e) {
            throw std::runtime_error((requests.size() > 1 ? fmt::format("prompt {}: ", i) : std::string()) + e.what());
        }
    }
    SpanSource src(requests, sink_for);
    serve(src);
}

std::vector<float> Engine::prefill_states(std::span<const int32_t> ids, std::vector<float>* logits) {
    Impl& s = *impl_;
    if (ids.empty()) throw std::invalid_argument("prefill_states: no tokens");
    if (int(ids.size()) > s.n_ctx_seq) throw std::invalid_argument("prefill_states: sequence longer than the context");
    llama_memory_clear(llama_get_memory(s.ctx), true);
    if (logits) s.set_slot_stats(0, false);  // the host path copies the full row
    BatchGuard batch(s.n_batch);
    for (size_t j = 0; j + 1 < ids.size(); ++j) {
        if (batch.b.n_tokens == s.n_batch) {
            s.decode(batch.b, false);
            batch.clear();
        }
        batch.add(ids[j], llama_pos(j), 0, false);
    }
    if (batch.b.n_tokens > 0) s.decode(batch.b, false);
    batch.clear();
    batch.add(ids.back(), llama_pos(ids.size() - 1), 0, true);
    s.decode(batch.b, true);
    if (logits) {
        const float* lg = llama_get_logits_ith(s.ctx, 0);
        logits->assign(lg, lg + s.model->info().n_vocab);
    }
    return s.step;
}

void Engine::set_control_vector(std::span<const float> data, int il_start, int il_end) {
    Impl& s = *impl_;
    const int L = s.model->info().n_layer;
    if (data.empty()) {
        llama_set_adapter_cvec(s.ctx, nullptr, 0, s.d, 0, 0);
        return;
    }
    if (data.size() % size_t(s.d) != 0 || data.size() / size_t(s.d) > size_t(L - 1))
        throw std::invalid_argument(fmt::format("control vector data of {} values does not fit {} blocks of n_embd {}", data.size(), L - 1, s.d));
    if (il_start < 0) il_start = 1;
    if (il_end < 0) il_end = L - 1;
    if (il_start < 1 || il_end >= L || il_start > il_end)
        throw std::invalid_argument(fmt::format("control vector layer range {}..{} is outside 1..{}", il_start, il_end, L - 1));
    take_llama_errors();
    if (llama_set_adapter_cvec(s.ctx, data.data(), data.size(), s.d, il_start, il_end) != 0) {
        const std::string why = take_llama_errors();
        throw std::invalid_argument("llama.cpp rejected the control vector" + (why.empty() ? std::string() : ": " + why));
    }
}

}  // namespace phasemap::capture
