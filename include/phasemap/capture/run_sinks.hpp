// Sinks for generated runs: an in-memory recorder, and the streaming NPZ writer that produces
// phasemap's run files (LIMEN extraction layout plus per-token statistics and metadata).
//
// Owns: RecordingSink owns the RunRecord it fills (states copied out of the engine's spans); NpzRunWriter
// owns its temporary parts until end() assembles the NPZ (a writer destroyed before end() leaves nothing at
// its path). TeeSink does not own its sinks: they must outlive it. Throws: std::runtime_error for I/O
// failures, naming the path.
#pragma once
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/io/npz.hpp"

namespace phasemap::capture {

// Keeps a whole run in memory (states [T, L', d], optional logits [T, V]).
struct RunRecord {
    RunStart start;
    std::vector<TokenRecord> tokens;
    std::vector<float> states;
    std::vector<float> logits;
    RunEnd end;
    bool finished = false;
};

class RecordingSink : public RunSink {
public:
    void begin(const RunStart& s) override;
    void token(const TokenRecord& rec, std::span<const float> states, std::span<const float> logits) override;
    void end(const RunEnd& e) override;
    RunRecord record;
};

// Forwards every event to several sinks, in order.
class TeeSink : public RunSink {
public:
    explicit TeeSink(std::vector<RunSink*> sinks) : sinks_(std::move(sinks)) {}
    void begin(const RunStart& s) override { for (auto* k : sinks_) k->begin(s); }
    void token(const TokenRecord& r, std::span<const float> st, std::span<const float> lg) override {
        for (auto* k : sinks_) k->token(r, st, lg);
    }
    void end(const RunEnd& e) override { for (auto* k : sinks_) k->end(e); }

private:
    std::vector<RunSink*> sinks_;
};

// Metadata shared by the runs of one invocation (model, engine, versions).
nlohmann::json provenance_json(const ModelInfo& model, const EngineFacts& facts, const std::string& layer_spec);

// The run-file metadata (metadata.json) of one run, assembled in two steps as a run streams: the
// facts of RunStart (run_index, prompt_text, layers with label, tensor, hf_index and the LayerId's
// kind, index and depth, n_embd, n_vocab, routing) and of RunEnd (stop_reason, n_generated,
// generated_text, tokens = the token texts, insertions, monitor_events). NpzRunWriter writes
// exactly this; run_metadata() gives the same for a recorded run (what `import phasemap` shows
// as Run.metadata): base (RunPlan::metadata) plus both steps, as metadata.json would parse.
void add_run_start_metadata(nlohmann::json& meta, const RunStart& s);
void add_run_end_metadata(nlohmann::json& meta, const RunEnd& e, const nlohmann::json& token_texts);
std::string metadata_text(const nlohmann::json& meta);  // the bytes of metadata.json
nlohmann::json run_metadata(nlohmann::json base, const RunRecord& r);

// The per-token columns of a recorded run, one value per generated token, in the NPZ's member
// types (token_ids / positions i8, entropy / top1 / margin / surprisal f8), plus prompt_ids: what
// `replicate` and the Python package's Run hand over as arrays.
struct TokenColumns {
    std::vector<int64_t> token_ids, positions, prompt_ids;
    std::vector<double> entropy, top1, margin, surprisal;
};
TokenColumns token_columns(const RunRecord& r);

// Streams one run to an NPZ file. Members: hidden_states [T, L', d] f4 (when layers are
// captured), logits [T, V] f4 (when save_logits), token_ids [T] i8, positions [T] i8,
// entropy/top1/margin/surprisal [T] f8, prompt_ids [P] i8, with MoE routing
// (EngineOptions::routing) routing_experts [T, M, k] i4 and routing_weights [T, M, k] f4 for
// the M MoE blocks listed in metadata "routing", and metadata.json (UTF-8 JSON).
// Arrays go to temporary .npy files token by token (memory does not grow with T); end()
// assembles the NPZ atomically. If the run never ends, nothing is left at the output path.
class NpzRunWriter : public RunSink {
public:
    NpzRunWriter(std::filesystem::path out, nlohmann::json metadata, bool compress = false);
    ~NpzRunWriter() override;
    void begin(const RunStart& s) override;
    void token(const TokenRecord& rec, std::span<const float> states, std::span<const float> logits) override;
    void end(const RunEnd& e) override;
    const std::filesystem::path& path() const { return out_; }
    // The metadata written into the file (complete after end()).
    const nlohmann::json& metadata() const { return meta_; }

private:
    std::filesystem::path out_, tmpdir_;
    std::unique_ptr<io::TempArea> parts_;
    nlohmann::json meta_;
    bool compress_;
    std::unique_ptr<io::NpyStreamWriter> hs_, lg_, ids_, pos_, ent_, top1_, margin_, surp_, rexp_, rw_;
    nlohmann::json token_texts_;
    std::vector<int32_t> prompt_ids_;
};

}  // namespace phasemap::capture
