// Capture engine: loads a GGUF model through llama.cpp, generates text for one or many prompts
// (batched in one llama_batch), and captures hidden states at the emitting position of every
// generated token through the scheduler eval callback (METRICS.md §1).
//
// This header does not expose llama.cpp types; src/capture is the only code that includes llama.h.
//
// Owns: a Model owns its llama.cpp model and LoRA adapters (freed with the last shared_ptr); an Engine owns
// its llama.cpp context and holds the Model by shared_ptr, so the Model outlives it. Lifetimes: spans handed
// to a RunSink are valid only during the call; Request::controller and an Admission's sink are not owned and
// must outlive the run; references returned by info()/layers()/facts() live as long as the Model/Engine.
// Throws: std::runtime_error (files, llama.cpp failures) and std::invalid_argument (options), as stated per
// function.
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "phasemap/capture/intervene.hpp"
#include "phasemap/capture/layers.hpp"
#include "phasemap/metrics/token_stats.hpp"

namespace phasemap::capture {

enum class Precision { exact, fast };
const char* precision_name(Precision p);
Precision parse_precision(const std::string& s);  // throws std::invalid_argument

// Where the per-token output statistics (entropy, top1, margin, surprisal; METRICS.md §1) are
// computed. graph: by ggml ops in llama.cpp's graph (llama.cpp's backend-sampling API), so a
// decode step copies a few floats per greedy sequence instead of its full logits row; within
// 1e-6 relative of host, the same top-1 token. Sampled sequences (temperature > 0) keep the host
// path: llama.cpp's CPU sampler chain needs their full row on the host anyway. host: the
// float64 softmax over every row on the host (metrics::token_prob_stats), the reference.
// automatic ("auto", the default): graph when the model's output layer runs on an accelerator,
// host when it runs on the CPU backend — there the graph's unfused passes over [V, sequences]
// cost ~3× the host's one fused float64 pass (BENCHMARKS.md) and there is no transfer to save.
enum class OutputStats { automatic, graph, host };
const char* output_stats_name(OutputStats o);
OutputStats parse_output_stats(const std::string& s);  // throws std::invalid_argument
// The graph path's statistics of rows of `n_vocab` logits (row-major), computed by the same ggml
// ops on ggml's CPU backend without a model, with the top-1 token as the chosen one. For tests
// and benchmarks of the graph path against metrics::token_prob_stats on constructed logits.
std::vector<metrics::TokenProbStats> output_stats_on_cpu(std::span<const float> logits, int64_t n_vocab, int n_threads = 1);

// The thread count used where a thread option is 0: $PHASEMAP_THREADS when set (a positive
// integer; anything else throws std::invalid_argument naming the variable), else the physical
// cores this process may run on (physical_cores over /sys, restricted to the CPU affinity mask;
// SMT siblings count once, as in llama.cpp), else the CPUs of the affinity mask. The test suite
// runs with PHASEMAP_THREADS=1.
int default_threads();

// The physical cores among the online CPUs of the sysfs tree at `sys_root` ("/sys" on Linux):
// devices/system/cpu/online lists the CPUs, and CPUs whose cpuN/topology/core_cpus_list (or the
// older thread_siblings_list) is the same list share one core; a CPU without topology files is a
// core of its own. With `allowed` non-empty, only the cores with a CPU in it count. 0 when the
// online list is missing or malformed.
int physical_cores(const std::filesystem::path& sys_root, std::span<const int> allowed = {});

// How the CPU workers of an engine wait and run (README, "Threads"). ggml's workers meet at a
// barrier after every graph node; a worker that arrives early waits there, and between decode
// steps the whole team waits for the next graph.
//   poll 0..100: how long a waiting worker busy-waits before it sleeps. With the OpenMP build of
//     ggml (the pinned build) every wait is libgomp's: the spin count is 30·poll² (GOMP_SPINCOUNT;
//     poll 100 = 300,000, libgomp's own default and phasemap's behaviour before poll existed;
//     poll 0 sleeps at once). libgomp reads it once when it loads, so the CLI applies it by
//     re-executing itself (main.cpp) and an embedding process (Python) through the environment
//     before it loads phasemap. Without OpenMP it is ggml's threadpool polling level (the wait
//     between graphs; ggml's node barrier spins regardless).
//   priority: ggml's scheduling priority of the workers; medium/high/realtime are SCHED_FIFO
//     (40/80/90) and need CAP_SYS_NICE (ggml warns and keeps the normal policy without it).
enum class ThreadPriority { normal, medium, high, realtime };
const char* thread_priority_name(ThreadPriority p);
std::vector<std::string> thread_priority_names();
ThreadPriority parse_thread_priority(const std::string& s);  // throws std::invalid_argument
// The default poll level, chosen by measurement (BENCHMARKS.md, "Threads on a shared machine").
inline constexpr int kDefaultPoll = 8;
struct ThreadOptions {
    int poll = kDefaultPoll;
    ThreadPriority priority = ThreadPriority::normal;
};
// The one check of a poll level (opt::kPoll, [0, 100]): std::invalid_argument naming --poll.
void check_poll(int poll);
// libgomp's spin count for a poll level (30·poll²); check_poll's error outside [0, 100].
uint64_t omp_spin_count(int poll);
// Whether ggml's CPU backend runs its workers on OpenMP (the backend's OPENMP feature).
bool workers_use_openmp();
// The process-wide thread options an Engine uses when EngineOptions::workers is empty (the CLI
// sets them from --poll / --prio). set_thread_defaults validates (std::invalid_argument).
void set_thread_defaults(const ThreadOptions& o);
ThreadOptions thread_defaults();

// A LoRA adapter GGUF (general.type "adapter", adapter.type "lora"; tensors <weight>.lora_a /
// <weight>.lora_b) and its scale. Every adapted weight W then computes
// W·x + scale · (alpha / rank) · B·(A·x), as llama.cpp's build_lora_mm does (alpha: the file's
// adapter.lora.alpha; 0 or absent means a factor of scale alone).
struct LoraAdapter {
    std::filesystem::path path;
    float scale = 1.0f;
};

struct ModelOptions {
    int n_threads = 0;       // 0: default_threads()
    int n_gpu_layers = 0;    // layers offloaded when a GPU backend is built in (0: $PHASEMAP_GPU_LAYERS or none; -1: all)
    // Loaded together with the model (llama_adapter_lora_init) and applied, with their scales,
    // by every Engine on it; freed with the model. A scale of 0 leaves the graph untouched.
    std::vector<LoraAdapter> adapters;
    // Load an architecture that architecture_refusal() refuses. Only the architecture sweep
    // (tests/archs) sets it, to re-measure what made the refusal necessary.
    bool allow_unverified_architecture = false;
};

// Why phasemap refuses to capture `arch` (general.architecture), or nullptr when it does not.
// The list is settled by the architecture sweep (docs/architectures.md): an architecture whose
// captured tensors fail its checks is refused at load, never captured silently wrong.
const char* architecture_refusal(const std::string& arch);

// A loaded LoRA adapter (recorded with every run).
struct AdapterInfo {
    std::filesystem::path path;  // absolute
    std::string sha256;          // of the adapter file
    float scale = 1.0f;
    float alpha = 0.0f;          // adapter.lora.alpha (0: absent)
    int n_weights = 0;           // adapted weight matrices (lora_a / lora_b pairs)
};

// Facts about a loaded model (all read through llama.cpp or the GGUF metadata).
struct ModelInfo {
    std::filesystem::path path;
    std::string sha256;          // of the model file
    std::string architecture;    // general.architecture
    std::string name;            // general.name (may be empty)
    std::string description;     // llama_model_desc
    int n_layer = 0;             // transformer blocks L
    int n_embd = 0;              // hidden size d
    int n_vocab = 0;
    int n_ctx_train = 0;
    bool recurrent = false;
    bool has_chat_template = false;
    int64_t n_params = 0;
    std::vector<AdapterInfo> adapters;  // in ModelOptions order; empty for the bare model
    int n_expert = 0;            // <arch>.expert_count (experts per MoE block); 0 for a dense model
};

// One message of a conversation for the chat template (Model::apply_chat_template).
struct ChatMessage {
    std::string role;     // "system", "user" or "assistant"
    std::string content;
};

class Model {
public:
    // Throws std::runtime_error with a clear message for a missing, non-GGUF, truncated or
    // unsupported file, for a refused architecture ("phasemap refuses architecture 'X': why"), and for an adapter that cannot be applied to this model (missing file,
    // not a LoRA GGUF, another architecture, tensors of other shapes); that message names the
    // adapter file.
    static std::shared_ptr<Model> load(const std::filesystem::path& path, const ModelOptions& opt = {});
    ~Model();
    const ModelInfo& info() const { return info_; }

    std::vector<int32_t> tokenize(const std::string& text, bool add_special, bool parse_special = false) const;
    std::string token_text(int32_t id) const;           // the piece as it appears in text
    std::string detokenize(std::span<const int32_t> ids) const;
    bool is_eog(int32_t id) const;
    // Applies the model's chat template to one user message with the generation prompt appended.
    // Throws when the model has no usable template.
    std::string apply_chat_template(const std::string& user_message) const;
    // The same for a conversation: messages in order (role "system", "user" or "assistant"; the
    // caller validates roles), the generation prompt appended. Throws as the one-message form.
    std::string apply_chat_template(std::span<const ChatMessage> messages) const;

private:
    // The llama.cpp handles (src/capture/llama_common.hpp); reached inside src/capture through
    // ModelAccess, never from outside the module.
    struct Impl;
    friend struct ModelAccess;
    Model() = default;
    std::unique_ptr<Impl> impl_;
    ModelInfo info_;
};

struct SamplingOptions {
    float temperature = 0.0f;   // 0 → greedy (arg-max)
    int top_k = 0;              // 0 → off
    float top_p = 1.0f;         // 1 → off
    uint64_t seed = 0;
};

struct EngineOptions {
    Precision precision = Precision::exact;
    int n_ctx = 0;               // 0 → min(model training context, 4096)
    int n_parallel = 1;          // prompts decoded together in one batch
    int n_threads = 0;           // 0 → default_threads()
    // Poll level and priority of the engine's CPU threadpool; empty → thread_defaults().
    std::optional<ThreadOptions> workers;
    std::string layers = "hf:all";  // layer spec (see layers.hpp); "" or "none" → no capture
    bool save_logits = false;    // pass full logits to the sink
    OutputStats output_stats = OutputStats::automatic;  // see OutputStats
    // Requests of one batch with the same prompt tokens (and no prefill interventions) are
    // prefilled once and forked with llama_memory_seq_cp; recurrent memory falls back to a
    // prefill per sequence (see docs/interventions.md).
    bool share_prompt_prefix = false;
    // MoE routing as a channel: per generated token and MoE block, the experts the router selected
    // and the weights their outputs are mixed with (TokenRecord::experts / expert_weights). The
    // engine reads llama.cpp's ffn_moe_topk-N and the last weight stage the graph computes
    // (ffn_moe_weights_scaled-N, _norm-N, _softmax-N or ffn_moe_weights-N); a model with no MoE
    // block is std::invalid_argument naming the architecture.
    bool routing = false;
};

// The MoE blocks a routing run reads (empty without EngineOptions::routing).
struct RoutingLayout {
    std::vector<int> blocks;              // MoE block indices, ascending
    int n_expert = 0;                     // experts per MoE block
    int n_expert_used = 0;                // k: experts selected per token
    std::vector<std::string> weight_tensors;  // per block: the graph tensor the weights come from
};

struct Request {
    std::string prompt;          // raw user prompt
    bool chat = false;           // apply the model's chat template
    std::vector<ChatMessage> messages;  // chat: the conversation; empty: `prompt` as one user message
    int n_predict = 64;          // maximum number of generated tokens (≥ 1)
    SamplingOptions sampling;
    // Hidden-state edits for this request's sequence only (intervene.hpp); validated against the
    // model before any decoding starts.
    std::vector<Intervention> interventions;
    // Online monitor / guard: called after every generated token (may stop the run, add
    // interventions or insert text). Not owned; must outlive generate().
    GenerationController* controller = nullptr;
    // Cancellation: any thread may set the flag while the request runs (the server does when its
    // client disconnects); the sequence then ends before its next decode step with stop reason
    // "cancelled" (RunSink::end is called, with the tokens so far) and its slot is freed. Null:
    // not cancellable. A request whose flag is set before admission ends at its first step.
    std::shared_ptr<std::atomic<bool>> cancel;
};

// The request of one prompt with the generation settings every front end shares (chat template,
// length, sampling); no interventions, no controller. plan::make_request and the panel runner
// build their requests with it.
Request make_request(std::string prompt, bool chat, int n_predict, const SamplingOptions& sampling);

// Per-run facts fixed before generation starts.
struct RunStart {
    size_t run_index = 0;                 // index of the request
    std::string prompt_text;              // text actually tokenised (template applied or not)
    std::vector<int32_t> prompt_ids;
    std::vector<ResolvedLayer> layers;    // captured layers in output order
    int n_embd = 0;
    int n_vocab = 0;
    RoutingLayout routing;
    // Where this run's output statistics are computed: "graph" (EngineFacts::output_stats is graph
    // and the sequence is greedy) or "host" (the host path, or a sampled sequence in graph mode).
    std::string output_stats = "host";
};

// One generated token.
struct TokenRecord {
    int t = 0;                            // 0-based index of the generated token
    int32_t id = -1;
    std::string text;
    int position = 0;                     // context position of the emitting position
    metrics::TokenProbStats stats;
    // With EngineOptions::routing: [blocks × k] row-major, in RoutingLayout::blocks order, the
    // selected experts in the router's order (highest selection score first) and their weights.
    std::vector<int32_t> experts;
    std::vector<float> expert_weights;
};

struct RunEnd {
    // "eog", "length", "context", "monitor" (or the controller's reason), "cancelled"
    // (Request::cancel), or "error" (Engine::serve only: this sequence failed, see `error`).
    std::string stop_reason;
    std::string error;                    // the failure's message when stop_reason is "error"
    int n_generated = 0;
    std::string text;                     // generated text (detokenised; inserted text excluded)
    std::vector<Insertion> insertions;    // guard text decoded into the context (in order)
    std::vector<std::string> events;      // controller log lines
};

// Receives a run's tokens as they are generated. `states` is row-major [L', d] float32 for
// the captured layers (empty when nothing is captured); `logits` is [V] (empty unless
// save_logits). Spans are valid only during the call.
class RunSink {
public:
    virtual ~RunSink() = default;
    virtual void begin(const RunStart& start) = 0;
    virtual void token(const TokenRecord& rec, std::span<const float> states, std::span<const float> logits) = 0;
    virtual void end(const RunEnd& end) = 0;
};

// A request handed to Engine::serve: the loop owns the copy of the request while its sequence
// runs; `sink` must outlive the sink's end() (or RequestSource::failed for a request that
// never began). run_index is RunStart::run_index and the key of the request's interventions.
struct Admission {
    Request request;
    RunSink* sink = nullptr;
    size_t run_index = 0;
};

// Where Engine::serve takes its requests from. next() is called between decode steps whenever a
// slot (a llama.cpp sequence) is free. idle: no sequence runs, so next() may block until a
// request comes, and nullopt ends serve(); not idle: next() must not block, and nullopt means
// "nothing waiting now". Called on the thread that runs serve().
class RequestSource {
public:
    virtual ~RequestSource() = default;
    virtual std::optional<Admission> next(bool idle) = 0;
    // An admitted request that failed: validation at admission (then its sink was never begun),
    // or an error while it ran (its sink then ends with stop reason "error" after this returns).
    // Only that sequence stops; the others go on. Throwing here ends serve() with that
    // exception (generate() rethrows `error`, stopping at the first failure).
    virtual void failed(const Admission& request, std::exception_ptr error) = 0;
};

// Shared settings recorded with every run (provenance).
struct EngineFacts {
    std::string precision;
    int n_ctx = 0;
    int n_batch = 0;
    std::string type_k, type_v;
    std::string flash_attn;
    int n_threads = 0;
    // "graph" or "host": where the output statistics are computed (EngineOptions::output_stats;
    // "host" also when the output device cannot run the graph's ops).
    std::string output_stats;
};

// The smallest context per sequence that changes nothing for `requests`: the longest prompt
// (tokenised as generate() does) plus the largest n_predict, rounded up to 256 cells, capped at
// the default (min(training context, 4096)) so that a run stops at the same token as with the
// default. The KV cache holds n_ctx × n_parallel cells, so a panel of short runs needs a small
// fraction of the default's memory (16 × 4096 cells of F32 KV is 1.6 GB for Qwen2.5-0.5B, 17 GB
// for a Mistral-7B-shaped model). Requests with guard text or monitors may need more cells: use the default.
int context_for(const Model& m, std::span<const Request> requests);

// What the first captured decode's graph showed (recorded once per Engine, in the eval
// callback's ask pass, which sees every graph node).
struct GraphFacts {
    bool recorded = false;
    std::vector<std::string> node_names;  // sorted, unique
    bool gelu = false;                    // a GELU / GELU-erf / quick-GELU or GEGLU node
    std::string embd_tensor;              // the graph tensor hf:0 was read from ("" when not captured)
};

class Engine {
public:
    // Validates options against the model (layer spec, context) and creates the llama context.
    Engine(std::shared_ptr<Model> model, const EngineOptions& opt);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const std::vector<ResolvedLayer>& layers() const;
    const EngineFacts& facts() const;
    // Empty (recorded == false) until the first decode that captures.
    const GraphFacts& graph_facts() const;
    const RoutingLayout& routing() const;

    // Generates every request, at most n_parallel at a time in one batch; `sink_for(i)` gives
    // the sink of request i (called once per request, before its first token). Requests are
    // validated (empty prompt, prompt longer than the context, n_predict < 1) before any
    // decoding starts; a failure throws std::runtime_error naming the request.
    // generate() is serve() with the requests as the source: request i joins when a slot frees
    // (continuous batching, see serve()).
    void generate(std::span<const Request> requests, const std::function<RunSink&(size_t)>& sink_for);

    // The engine loop (continuous batching): up to n_parallel sequences decode in lock step, one
    // token each per step; between steps, finished and cancelled sequences leave (their slot's
    // memory is removed) and new requests from `src` join (prefilled, then in the next step).
    // Returns when the source ends it (next(true) gives nullopt). A failing request or decode
    // ends only the sequences it concerns (RequestSource::failed), never the loop.
    void serve(RequestSource& src);

    // The checks generate() and serve() make before a request runs (empty prompt, n_predict,
    // sampling ranges, interventions against the model, prompt longer than the context);
    // throws std::runtime_error with the reason. Safe to call from any thread.
    void validate(const Request& request) const;

    // Prefills `ids` (one sequence) and returns the states of the captured layers at the last
    // position, [L', d] row-major, plus the logits there. Used to check the emitting position.
    std::vector<float> prefill_states(std::span<const int32_t> ids, std::vector<float>* logits = nullptr);

    // Applies a control vector through llama.cpp's own cvec path (llama_set_adapter_cvec):
    // `data` holds n_embd values per block starting at block 1 (steer::ControlVector::flat),
    // added to the output of blocks il_start..il_end (inclusive; −1: 1..L−1) at every position.
    // Empty `data` removes it. Throws std::invalid_argument when llama.cpp rejects it.
    void set_control_vector(std::span<const float> data, int il_start = -1, int il_end = -1);

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace phasemap::capture
