#include "phasemap/capture/run_sinks.hpp"

#include <fmt/core.h>

#include <random>

#include "phasemap/capture/version.hpp"

namespace phasemap::capture {

namespace fs = std::filesystem;

void RecordingSink::begin(const RunStart& s) {
    record = RunRecord{};
    record.start = s;
}

void RecordingSink::token(const TokenRecord& rec, std::span<const float> states, std::span<const float> logits) {
    record.tokens.push_back(rec);
    record.states.insert(record.states.end(), states.begin(), states.end());
    record.logits.insert(record.logits.end(), logits.begin(), logits.end());
}

void RecordingSink::end(const RunEnd& e) {
    record.end = e;
    record.finished = true;
}

nlohmann::json provenance_json(const ModelInfo& mi, const EngineFacts& f, const std::string& layer_spec) {
    nlohmann::json j;
    j["phasemap_version"] = version();
    j["llama_cpp_commit"] = llama_commit();
    j["model"] = {{"path", mi.path.string()},          {"file", mi.path.filename().string()},
                  {"sha256", mi.sha256},               {"architecture", mi.architecture},
                  {"name", mi.name},                   {"description", mi.description},
                  {"n_layer", mi.n_layer},             {"n_embd", mi.n_embd},
                  {"n_vocab", mi.n_vocab},             {"n_params", mi.n_params},
                  {"n_ctx_train", mi.n_ctx_train},     {"recurrent", mi.recurrent}};
    j["engine"] = {{"precision", f.precision}, {"n_ctx", f.n_ctx},       {"n_batch", f.n_batch},
                   {"type_k", f.type_k},       {"type_v", f.type_v},     {"flash_attn", f.flash_attn},
                   {"n_threads", f.n_threads}, {"output_stats", f.output_stats}};
    j["layer_spec"] = layer_spec;
    if (!mi.adapters.empty()) {
        // LoRA adapters applied to the model (only present when there are any).
        nlohmann::json ad = nlohmann::json::array();
        for (const AdapterInfo& a : mi.adapters)
            ad.push_back({{"path", a.path.string()}, {"sha256", a.sha256}, {"scale", a.scale}, {"alpha", a.alpha},
                          {"n_weights", a.n_weights}});
        j["adapters"] = ad;
    }
    return j;
}

void add_run_start_metadata(nlohmann::json& meta, const RunStart& s) {
    if (!s.routing.blocks.empty())
        meta["routing"] = {{"blocks", s.routing.blocks},
                           {"n_expert", s.routing.n_expert},
                           {"n_expert_used", s.routing.n_expert_used},
                           {"weight_tensors", s.routing.weight_tensors}};
    meta["run_index"] = s.run_index;
    meta["prompt_text"] = s.prompt_text;
    meta["output_stats"] = s.output_stats;  // this run's path (engine.output_stats: the engine's mode)
    // The model's block count (provenance "model.n_layer") places hf:L on the depth axis.
    int n_layer = 0;
    if (meta.contains("model") && meta["model"].is_object()) n_layer = meta["model"].value("n_layer", 0);
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : s.layers) {
        nlohmann::json j = {{"label", l.label}, {"tensor", l.tensor}, {"hf_index", l.hf_index},
                            {"kind", std::string(metrics::to_string(l.id.kind))}, {"index", l.id.index}};
        if (n_layer > 0) j["depth"] = l.id.depth(n_layer);
        layers.push_back(std::move(j));
    }
    meta["layers"] = layers;
    meta["n_embd"] = s.n_embd;
    meta["n_vocab"] = s.n_vocab;
}

void add_run_end_metadata(nlohmann::json& meta, const RunEnd& e, const nlohmann::json& token_texts) {
    meta["stop_reason"] = e.stop_reason;
    meta["n_generated"] = e.n_generated;
    meta["generated_text"] = e.text;
    meta["tokens"] = token_texts;
    // Guard text the monitor decoded into the context, and the controller's log (generate --monitor).
    if (!e.insertions.empty()) {
        nlohmann::json ins = nlohmann::json::array();
        for (const auto& in : e.insertions)
            ins.push_back({{"after_t", in.after_t}, {"position", in.position}, {"token_ids", in.ids}, {"text", in.text},
                           {"text_offset", in.text_offset}});
        meta["insertions"] = std::move(ins);
    }
    if (!e.events.empty()) meta["monitor_events"] = e.events;
}

std::string metadata_text(const nlohmann::json& meta) {
    return meta.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json run_metadata(nlohmann::json base, const RunRecord& r) {
    add_run_start_metadata(base, r.start);
    nlohmann::json texts = nlohmann::json::array();
    for (const auto& t : r.tokens) texts.push_back(t.text);
    add_run_end_metadata(base, r.end, texts);
    // The same bytes as the NPZ's metadata.json parse to the same value (invalid UTF-8 replaced).
    return nlohmann::json::parse(metadata_text(base));
}

NpzRunWriter::NpzRunWriter(fs::path out, nlohmann::json metadata, bool compress)
    : out_(std::move(out)), meta_(std::move(metadata)), compress_(compress) {
    // The per-array parts live in a temporary folder of the atomic writer (removed when the run
    // ends, fails, or the process gets SIGINT/SIGTERM).
    parts_ = std::make_unique<io::TempArea>(out_);
    tmpdir_ = parts_->dir();
}

NpzRunWriter::~NpzRunWriter() {
    hs_.reset(); lg_.reset(); ids_.reset(); pos_.reset(); ent_.reset(); top1_.reset(); margin_.reset(); surp_.reset();
    rexp_.reset(); rw_.reset();
    parts_.reset();
}

void NpzRunWriter::begin(const RunStart& s) {
    const size_t Lp = s.layers.size();
    if (Lp) hs_ = std::make_unique<io::NpyStreamWriter>(tmpdir_ / "hidden_states.npy", "<f4", std::vector<size_t>{Lp, size_t(s.n_embd)});
    if (meta_.value("save_logits", false))
        lg_ = std::make_unique<io::NpyStreamWriter>(tmpdir_ / "logits.npy", "<f4", std::vector<size_t>{size_t(s.n_vocab)});
    ids_ = std::make_unique<io::NpyStreamWriter>(tmpdir_ / "token_ids.npy", "<i8", std::vector<size_t>{});
    pos_ = std::make_unique<io::NpyStreamWriter>(tmpdir_ / "positions.npy", "<i8", std::vector<size_t>{});
    ent_ = std::make_unique<io::NpyStreamWriter>(tmpdir_ / "entropy.npy", "<f8", std::vector<size_t>{});
    top1_ = std::make_unique<io::NpyStreamWriter>(tmpdir_ / "top1.npy", "<f8", std::vector<size_t>{});
    margin_ = std::make_unique<io::NpyStreamWriter>(tmpdir_ / "margin.npy", "<f8", std::vector<size_t>{});
    surp_ = std::make_unique<io::NpyStreamWriter>(tmpdir_ / "surprisal.npy", "<f8", std::vector<size_t>{});
    if (!s.routing.blocks.empty()) {
        const std::vector<size_t> shape{s.routing.blocks.size(), size_t(s.routing.n_expert_used)};
        rexp_ = std::make_unique<io::NpyStreamWriter>(tmpdir_ / "routing_experts.npy", "<i4", shape);
        rw_ = std::make_unique<io::NpyStreamWriter>(tmpdir_ / "routing_weights.npy", "<f4", shape);
    }
    add_run_start_metadata(meta_, s);
    prompt_ids_ = s.prompt_ids;
    token_texts_ = nlohmann::json::array();
}

void NpzRunWriter::token(const TokenRecord& rec, std::span<const float> states, std::span<const float> logits) {
    if (hs_) hs_->append(states.data(), 1);
    if (lg_) lg_->append(logits.data(), 1);
    const int64_t id = rec.id, pos = rec.position;
    ids_->append(&id, 1);
    pos_->append(&pos, 1);
    ent_->append(&rec.stats.entropy, 1);
    top1_->append(&rec.stats.top1, 1);
    margin_->append(&rec.stats.margin, 1);
    surp_->append(&rec.stats.surprisal, 1);
    if (rexp_) {
        if (rec.experts.empty() || rec.experts.size() != rec.expert_weights.size())
            throw std::runtime_error(fmt::format("token {} carries no routing record", rec.t));
        rexp_->append(rec.experts.data(), 1);
        rw_->append(rec.expert_weights.data(), 1);
    }
    token_texts_.push_back(rec.text);
}

void NpzRunWriter::end(const RunEnd& e) {
    io::NpzBuilder b;
    for (auto* w : {hs_.get(), lg_.get(), ids_.get(), pos_.get(), ent_.get(), top1_.get(), margin_.get(), surp_.get(), rexp_.get(), rw_.get()}) {
        if (!w) continue;
        w->finish();
        b.add_file(w->path().filename().string(), w->path());
    }
    std::vector<int64_t> pids(prompt_ids_.begin(), prompt_ids_.end());
    b.add_bytes("prompt_ids.npy", io::npy_bytes("<i8", {pids.size()}, pids.data()));
    add_run_end_metadata(meta_, e, token_texts_);
    b.add_bytes("metadata.json", metadata_text(meta_));
    b.commit(out_, compress_);
}

TokenColumns token_columns(const RunRecord& r) {
    TokenColumns c;
    c.prompt_ids.assign(r.start.prompt_ids.begin(), r.start.prompt_ids.end());
    for (const auto& t : r.tokens) {
        c.token_ids.push_back(t.id);
        c.positions.push_back(t.position);
        c.entropy.push_back(t.stats.entropy);
        c.top1.push_back(t.stats.top1);
        c.margin.push_back(t.stats.margin);
        c.surprisal.push_back(t.stats.surprisal);
    }
    return c;
}

}  // namespace phasemap::capture
