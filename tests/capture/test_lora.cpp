// LoRA adapters through the capture engine (ModelOptions::adapters, llama.cpp's adapter API),
// with adapters written by modelgen::write_random_lora.
//
//   * An adapter on the LM head only (output.weight): at every position the adapted logits are
//     the base logits plus scale · (alpha / rank) · B·A·h, with h the final-norm state the
//     engine captures as hf:L, B and A read from the adapter file — within 1e-4 of ‖the update‖,
//     in exact precision; h itself is bitwise the base model's.
//   * scale 0 gives bitwise the base model's logits and states.
//   * An adapter on attn_q changes the block outputs but not the embedding (hf:0).
//   * Adapters that do not fit the model are refused before anything runs, with one message
//     naming the adapter file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/modelgen/modelgen.hpp"
#include "support/gguf_weights.hpp"
#include "support/paths.hpp"

namespace {

namespace cap = phasemap::capture;
namespace gen = phasemap::modelgen;
namespace fs = std::filesystem;
using pmtest::GgufWeights;

fs::path vocab_dir() {
    fs::path d = pmtest::llama_src_dir() / "models";
    if (!fs::exists(d / "ggml-vocab-llama-spm.gguf")) d = gen::default_vocab_dir();
    return d;
}

// A tiny random llama with its own output head (untied), or with another width.
fs::path make_llama(const fs::path& dir, const std::string& name, uint32_t n_embd = 64) {
    const fs::path vd = vocab_dir();
    if (vd.empty()) return {};
    gen::ModelSpec spec = gen::preset("llama", "tiny");
    spec.tied_embeddings = false;
    spec.n_embd = n_embd;
    spec.seed = 11;
    const fs::path out = dir / name;
    gen::write_random_model(spec, vd, out);
    return out;
}

fs::path make_lora(const fs::path& base, const fs::path& out, std::vector<std::string> targets, uint32_t rank, float alpha,
                   float b_std = 0.5f, uint64_t seed = 3) {
    gen::LoraSpec ls;
    ls.targets = std::move(targets);
    ls.rank = rank;
    ls.alpha = alpha;
    ls.b_std = b_std;
    ls.seed = seed;
    gen::write_random_lora(base, ls, out);
    return out;
}

std::shared_ptr<cap::Model> load(const fs::path& model, const fs::path& adapter = {}, float scale = 1.0f) {
    cap::ModelOptions mo;
    if (!adapter.empty()) mo.adapters.push_back({adapter, scale});
    return cap::Model::load(model, mo);
}

std::unique_ptr<cap::Engine> engine(const std::shared_ptr<cap::Model>& m, const std::string& layers) {
    cap::EngineOptions eo;
    eo.precision = cap::Precision::exact;
    eo.layers = layers;
    eo.save_logits = true;
    eo.n_threads = 1;
    eo.n_ctx = 128;
    return std::make_unique<cap::Engine>(m, eo);
}

double norm2(const std::vector<double>& x) {
    double s = 0;
    for (double v : x) s += v * v;
    return std::sqrt(s);
}

struct HeadLoraCheck {
    size_t positions = 0;
    double max_rel = 0;          // max over positions of ‖lora − (base + update)‖ / ‖update‖
    double max_abs = 0;          // max |lora − (base + update)| over positions and vocab
    double min_update_rel = 1e300;  // min over positions of ‖update‖ / ‖base logits‖
    double no_alpha_rel = 1e300;    // the same check with the alpha / rank factor left out
    bool states_equal = true;       // hf:L of adapted and base model bitwise equal
};

// The output-head adapter identity at every prefix end of `prompt`.
HeadLoraCheck check_head_lora(const fs::path& model_path, const fs::path& dir, const std::string& prompt) {
    constexpr uint32_t kRank = 4;
    constexpr float kAlpha = 8.0f, kScale = 0.75f;
    const fs::path adapter = make_lora(model_path, dir / "head-lora.gguf", {"output"}, kRank, kAlpha);
    GgufWeights aw(adapter);
    const pmtest::GgufTensor A = aw.tensor("output.weight.lora_a");  // {n_embd, r}
    const pmtest::GgufTensor B = aw.tensor("output.weight.lora_b");  // {r, n_vocab}
    EXPECT_EQ(aw.get_string("general.type"), "adapter");
    EXPECT_EQ(aw.get_float("adapter.lora.alpha"), kAlpha);

    auto base = load(model_path);
    auto lora = load(model_path, adapter, kScale);
    EXPECT_EQ(lora->info().adapters.size(), 1u);
    EXPECT_EQ(lora->info().adapters[0].n_weights, 1);
    auto eb = engine(base, "hf:last");
    auto el = engine(lora, "hf:last");
    const std::vector<int32_t> ids = base->tokenize(prompt, true);
    const int64_t d = A.ne[0], r = A.ne[1], V = B.ne[1];
    EXPECT_EQ(d, base->info().n_embd);
    EXPECT_EQ(V, base->info().n_vocab);
    EXPECT_EQ(r, int64_t(kRank));
    EXPECT_EQ(B.ne[0], r);
    const double factor = double(kScale) * double(kAlpha) / double(kRank);

    HeadLoraCheck c;
    for (size_t n = 1; n <= ids.size(); ++n) {
        const std::span<const int32_t> prefix(ids.data(), n);
        std::vector<float> lb, ll;
        const std::vector<float> hb = eb->prefill_states(prefix, &lb);
        const std::vector<float> hl = el->prefill_states(prefix, &ll);
        EXPECT_EQ(hl.size(), size_t(d));
        if (hb.size() != hl.size() || std::memcmp(hb.data(), hl.data(), hb.size() * sizeof(float)) != 0) c.states_equal = false;
        // u = B·(A·h), in float64 from the file's A and B and the captured h.
        std::vector<double> ah(static_cast<size_t>(r), 0.0), u(static_cast<size_t>(V), 0.0);
        for (int64_t k = 0; k < r; ++k)
            for (int64_t j = 0; j < d; ++j) ah[size_t(k)] += A.at(j, k) * double(hl[size_t(j)]);
        for (int64_t i = 0; i < V; ++i)
            for (int64_t k = 0; k < r; ++k) u[size_t(i)] += B.at(k, i) * ah[size_t(k)];
        const size_t nV = static_cast<size_t>(V);
        std::vector<double> err(nV), err_no_alpha(nV), upd(nV), lbd(nV);
        for (int64_t i = 0; i < V; ++i) {
            const size_t ii = size_t(i);
            upd[ii] = factor * u[ii];
            lbd[ii] = lb[ii];
            err[ii] = double(ll[ii]) - (double(lb[ii]) + upd[ii]);
            err_no_alpha[ii] = double(ll[ii]) - (double(lb[ii]) + double(kScale) * u[ii]);
            c.max_abs = std::max(c.max_abs, std::abs(err[ii]));
        }
        c.max_rel = std::max(c.max_rel, norm2(err) / norm2(upd));
        c.no_alpha_rel = std::min(c.no_alpha_rel, norm2(err_no_alpha) / norm2(upd));
        c.min_update_rel = std::min(c.min_update_rel, norm2(upd) / norm2(lbd));
        ++c.positions;
    }
    return c;
}

void expect_head_lora(const std::string& what, const HeadLoraCheck& c) {
    std::cout << what << " LoRA head over " << c.positions << " positions: max rel err " << c.max_rel << " (of the update), max abs "
              << c.max_abs << ", update/base min " << c.min_update_rel << ", without alpha/rank " << c.no_alpha_rel << "\n";
    ::testing::Test::RecordProperty(what + "_lora_head_max_rel", std::to_string(c.max_rel));
    ::testing::Test::RecordProperty(what + "_lora_head_max_abs", std::to_string(c.max_abs));
    EXPECT_GE(c.positions, 4u);
    EXPECT_TRUE(c.states_equal) << "an output-head adapter changed hf:L";
    EXPECT_LE(c.max_rel, 1e-4);
    // The update is large enough to matter and the check sees a wrong scaling.
    EXPECT_GT(c.min_update_rel, 1e-2);
    EXPECT_GT(c.no_alpha_rel, 0.1);
}

TEST(Lora, OutputHeadUpdateIsExactOnStories) {
    const auto path = pmtest::shared_model("stories260K.gguf");
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    pmtest::TempDir tmp;
    expect_head_lora("stories260K", check_head_lora(path, tmp.path, "Once upon a time, there was a little girl"));
}

TEST(Lora, OutputHeadUpdateIsExactOnRandomLlama) {
    pmtest::TempDir tmp;
    const fs::path path = make_llama(tmp.path, "llama-untied.gguf");
    if (path.empty()) GTEST_SKIP() << "llama.cpp vocab files (models/ggml-vocab-*.gguf) not found";
    expect_head_lora("llama_tiny", check_head_lora(path, tmp.path, "Once upon a time there was"));
}

// Everything a generation hands to the sink.
struct Rec : cap::RunSink {
    std::vector<int32_t> ids;
    std::vector<float> states, logits;
    void begin(const cap::RunStart&) override {}
    void token(const cap::TokenRecord& r, std::span<const float> s, std::span<const float> l) override {
        ids.push_back(r.id);
        states.insert(states.end(), s.begin(), s.end());
        logits.insert(logits.end(), l.begin(), l.end());
    }
    void end(const cap::RunEnd&) override {}
};

Rec generate(const std::shared_ptr<cap::Model>& m, const std::string& layers = "hf:all") {
    auto e = engine(m, layers);
    std::vector<cap::Request> reqs(1);
    reqs[0].prompt = "Once upon a time";
    reqs[0].n_predict = 12;
    Rec rec;
    e->generate(reqs, [&](size_t) -> cap::RunSink& { return rec; });
    return rec;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Lora, ScaleZeroIsBitwiseTheBaseModel) {
    pmtest::TempDir tmp;
    fs::path path = pmtest::shared_model("stories260K.gguf");
    if (path.empty()) path = make_llama(tmp.path, "llama-untied.gguf");
    if (path.empty()) GTEST_SKIP() << "no model";
    const fs::path adapter = make_lora(path, tmp / "lora.gguf", {"output", "attn_q", "ffn_up"}, 4, 8.0f);
    const Rec base = generate(load(path));
    const Rec zero = generate(load(path, adapter, 0.0f));
    const Rec one = generate(load(path, adapter, 1.0f));
    ASSERT_FALSE(base.ids.empty());
    EXPECT_EQ(zero.ids, base.ids);
    EXPECT_TRUE(bitwise_equal(zero.logits, base.logits)) << "scale 0 changed the logits";
    EXPECT_TRUE(bitwise_equal(zero.states, base.states)) << "scale 0 changed the states";
    // The same adapter at scale 1 does change them (so the comparison above can fail).
    EXPECT_FALSE(bitwise_equal(one.logits, base.logits));
}

TEST(Lora, AttentionAdapterChangesBlocksButNotTheEmbedding) {
    pmtest::TempDir tmp;
    fs::path path = pmtest::shared_model("stories260K.gguf");
    if (path.empty()) path = make_llama(tmp.path, "llama-untied.gguf");
    if (path.empty()) GTEST_SKIP() << "no model";
    const fs::path adapter = make_lora(path, tmp / "q.gguf", {"attn_q"}, 2, 0.0f);
    auto base = load(path);
    auto lora = load(path, adapter, 1.0f);
    EXPECT_EQ(lora->info().adapters[0].n_weights, base->info().n_layer);
    const std::vector<int32_t> ids = base->tokenize("Once upon a time there was", true);
    const std::vector<float> hb = engine(base, "hf:all")->prefill_states(ids);
    const std::vector<float> hl = engine(lora, "hf:all")->prefill_states(ids);
    const size_t d = size_t(base->info().n_embd);
    ASSERT_EQ(hb.size(), hl.size());
    ASSERT_EQ(hb.size(), d * size_t(base->info().n_layer + 1));
    EXPECT_EQ(std::memcmp(hb.data(), hl.data(), d * sizeof(float)), 0) << "hf:0 changed";
    double diff = 0;
    for (size_t i = d; i < hb.size(); ++i) diff = std::max(diff, double(std::abs(hb[i] - hl[i])));
    EXPECT_GT(diff, 1e-4) << "attn_q adapter left every block unchanged";
}

std::string load_error(const fs::path& model, const fs::path& adapter) {
    try {
        load(model, adapter, 1.0f);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(Lora, AdaptersThatDoNotFitAreRefusedNamingTheFile) {
    pmtest::TempDir tmp;
    const fs::path model = make_llama(tmp.path, "llama-64.gguf");
    if (model.empty()) GTEST_SKIP() << "llama.cpp vocab files (models/ggml-vocab-*.gguf) not found";
    const fs::path wide = make_llama(tmp.path, "llama-96.gguf", 96);

    // Another n_embd: the attn_q adapter of a d = 96 model on a d = 64 one.
    const fs::path wide_lora = make_lora(wide, tmp / "wide-lora.gguf", {"attn_q"}, 4, 4.0f);
    std::string e = load_error(model, wide_lora);
    std::cout << "another n_embd: " << e << "\n";
    EXPECT_NE(e.find("wide-lora.gguf"), std::string::npos) << e;
    EXPECT_NE(e.find("llama-64.gguf"), std::string::npos) << e;
    EXPECT_NE(e.find("incorrect shape"), std::string::npos) << e;

    // Another architecture.
    gen::ModelSpec q = gen::preset("qwen2", "tiny");
    const fs::path qwen = tmp / "qwen2.gguf";
    gen::write_random_model(q, vocab_dir(), qwen);
    const fs::path qwen_lora = make_lora(qwen, tmp / "qwen-lora.gguf", {"attn_q"}, 4, 4.0f);
    e = load_error(model, qwen_lora);
    std::cout << "another architecture: " << e << "\n";
    EXPECT_NE(e.find("qwen-lora.gguf"), std::string::npos) << e;
    EXPECT_NE(e.find("\"qwen2\""), std::string::npos) << e;

    // A model file, a missing file, a file that is not GGUF.
    e = load_error(model, wide);
    EXPECT_NE(e.find("llama-96.gguf"), std::string::npos) << e;
    EXPECT_NE(e.find("not an adapter"), std::string::npos) << e;
    e = load_error(model, tmp / "absent.gguf");
    EXPECT_NE(e.find("absent.gguf"), std::string::npos) << e;
    EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
    {
        std::ofstream(tmp / "notes.txt") << "not a gguf file\n";
    }
    e = load_error(model, tmp / "notes.txt");
    EXPECT_NE(e.find("notes.txt"), std::string::npos) << e;
    EXPECT_NE(e.find("not a GGUF"), std::string::npos) << e;

    // The fitting adapter of the same model loads.
    const fs::path ok = make_lora(model, tmp / "ok-lora.gguf", {"attn_q"}, 4, 4.0f);
    EXPECT_EQ(load_error(model, ok), "(no error)");
}

}  // namespace
