// Capture correctness: what the engine captures through llama.cpp agrees with an independent
// float64 forward pass (tests/support/ref_llama, proven against the golden text in test_io).
//
//   * stories260K, exact precision: every captured layer (hf:0 … hf:L, block:0 … block:L-1) at
//     every generated token (greedy, 24 tokens) within 1e-5 relative of the reference at the same
//     context position; the greedy tokens are the reference's arg-max. `fast` precision is
//     measured and recorded (and held to a loose bound).
//   * random-weight tiny models of llama and qwen2 (phasemap's generator): the same full check.
//   * every architecture the generator writes (and stories260K): (a) hf:L × output head equals
//     llama.cpp's logits within 1e-3 max abs; (b) the final norm of block:L-1 equals hf:L within
//     1e-4 relative — both computed from the GGUF by architecture (RefOutputHead).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/modelgen/modelgen.hpp"
#include "support/gguf_weights.hpp"
#include "support/paths.hpp"
#include "support/ref_llama.hpp"

namespace {

namespace cap = phasemap::capture;
namespace gen = phasemap::modelgen;
using pmtest::GgufWeights;
using pmtest::RefLlama;
using pmtest::RefOutputHead;

// Everything the engine hands to a sink, copied.
struct Recorded {
    cap::RunStart start;
    std::vector<cap::TokenRecord> tokens;
    std::vector<std::vector<float>> states;  // per token: [L', d]
    std::vector<std::vector<float>> logits;  // per token: [V]
    cap::RunEnd end;
};

class RecordingSink : public cap::RunSink {
public:
    Recorded rec;
    void begin(const cap::RunStart& s) override { rec.start = s; }
    void token(const cap::TokenRecord& r, std::span<const float> states, std::span<const float> logits) override {
        rec.tokens.push_back(r);
        rec.states.emplace_back(states.begin(), states.end());
        rec.logits.emplace_back(logits.begin(), logits.end());
    }
    void end(const cap::RunEnd& e) override { rec.end = e; }
};

Recorded run_engine(const std::shared_ptr<cap::Model>& model, cap::Precision precision, const std::string& prompt,
                    int n_predict, const std::string& layers = "hf:all,block:all") {
    cap::EngineOptions eo;
    eo.precision = precision;
    eo.layers = layers;
    eo.save_logits = true;
    eo.n_threads = 1;
    eo.n_ctx = 128;  // stories260K's training context (a larger one is refused)
    cap::Engine engine(model, eo);
    cap::Request req;
    req.prompt = prompt;
    req.n_predict = n_predict;  // greedy: SamplingOptions{} has temperature 0
    RecordingSink sink;
    std::vector<cap::Request> reqs{req};
    engine.generate(reqs, [&](size_t) -> cap::RunSink& { return sink; });
    return std::move(sink.rec);
}

std::vector<double> to_double(std::span<const float> x) { return {x.begin(), x.end()}; }

// ‖a − b‖ / ‖b‖
double rel_err(std::span<const double> a, std::span<const double> b) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

double max_abs_diff(std::span<const double> a, std::span<const float> b) {
    double m = 0.0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - double(b[i])));
    return m;
}

// The reference state for a captured layer label ("hf:i" or "block:i").
const std::vector<double>& ref_state(const pmtest::RefPosition& p, const std::string& label) {
    const auto colon = label.find(':');
    const std::string kind = label.substr(0, colon);
    const size_t i = std::stoul(label.substr(colon + 1));
    if (kind == "hf") return p.hf.at(i);
    if (kind == "block") return p.block.at(i);
    throw std::invalid_argument("unknown layer label " + label);
}

struct Agreement {
    double max_rel = 0.0;                    // over all layers and tokens
    std::string worst;                       // "label @ t"
    std::map<std::string, double> per_layer; // max over tokens
    double max_logit_abs = 0.0;              // engine logits vs reference logits
    int argmax_mismatches = 0;               // generated token ≠ reference arg-max
};

// Compares every captured state of a run with the reference forward over the run's own sequence
// (prompt + generated tokens), at each token's emitting position.
Agreement compare_with_reference(const Recorded& r, const RefLlama& ref) {
    std::vector<int32_t> seq = r.start.prompt_ids;
    for (const auto& t : r.tokens) seq.push_back(t.id);
    const std::vector<pmtest::RefPosition> states = ref.forward(seq);
    const size_t d = size_t(r.start.n_embd);
    const size_t Lp = r.start.layers.size();
    Agreement a;
    for (size_t t = 0; t < r.tokens.size(); ++t) {
        const int pos = r.tokens[t].position;
        EXPECT_EQ(pos, int(r.start.prompt_ids.size() + t) - 1) << "emitting position of token " << t;
        const pmtest::RefPosition& p = states.at(size_t(pos));
        EXPECT_EQ(r.states[t].size(), Lp * d);
        for (size_t l = 0; l < Lp; ++l) {
            const std::string& label = r.start.layers[l].label;
            const std::vector<double> got = to_double(std::span<const float>(r.states[t]).subspan(l * d, d));
            const double e = rel_err(got, ref_state(p, label));
            a.per_layer[label] = std::max(a.per_layer[label], e);
            if (e > a.max_rel) {
                a.max_rel = e;
                a.worst = label + " @ token " + std::to_string(t);
            }
        }
        a.max_logit_abs = std::max(a.max_logit_abs, max_abs_diff(p.logits, r.logits[t]));
        const int32_t ref_best = int32_t(std::max_element(p.logits.begin(), p.logits.end()) - p.logits.begin());
        if (ref_best != r.tokens[t].id) ++a.argmax_mismatches;
    }
    return a;
}

std::string describe(const Agreement& a) {
    std::ostringstream os;
    os << "max rel " << a.max_rel << " (" << a.worst << "); per layer:";
    for (const auto& [label, e] : a.per_layer) os << ' ' << label << '=' << e;
    os << "; logits max abs " << a.max_logit_abs << "; argmax mismatches " << a.argmax_mismatches;
    return os.str();
}

std::string fmt_sci(double v) {
    std::ostringstream os;
    os << v;
    return os.str();
}

// Random tiny model written by phasemap's generator into `dir`; empty when the pinned llama.cpp
// vocab files are not available. Variants: "llama3" = llama with Llama-3.x rope_freqs factors;
// gemma2 gets a final soft-cap of 2 (instead of 30) so that the cap visibly bends its logits
// (|z| ≈ 1 on these random weights: with c = 30 tanh is linear to < 1e-3 and the cap would
// go untested).
std::filesystem::path make_tiny(const std::string& variant, const std::filesystem::path& dir) {
    // The pinned llama.cpp source this build uses, else the generator's own search order.
    std::filesystem::path vocab_dir = pmtest::llama_src_dir() / "models";
    if (!std::filesystem::exists(vocab_dir / "ggml-vocab-llama-spm.gguf")) vocab_dir = gen::default_vocab_dir();
    if (vocab_dir.empty()) return {};
    gen::ModelSpec spec = gen::preset(variant == "llama3" ? "llama" : variant, "tiny");
    spec.seed = 7;
    if (variant == "llama3") spec.llama3_rope_freqs = true;
    if (variant == "gemma2") spec.final_softcap = 2.0f;
    const std::filesystem::path out = dir / (variant + "-tiny.gguf");
    gen::write_random_model(spec, vocab_dir, out);
    return out;
}

constexpr double kExactTol = 1e-5;
constexpr int kTokens = 24;

// ---------------------------------------------------------------- stories260K, full reference

TEST(CaptureCorrectness, StoriesExactMatchesFloat64Reference) {
    const auto path = pmtest::shared_model("stories260K.gguf");
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    GgufWeights w(path);
    RefLlama ref(w);
    auto model = cap::Model::load(path);
    const Recorded r = run_engine(model, cap::Precision::exact, "Once upon a time", kTokens);

    ASSERT_EQ(r.tokens.size(), size_t(kTokens)) << "stop reason " << r.end.stop_reason;
    ASSERT_EQ(r.start.layers.size(), size_t(2 * ref.hparams().n_layer + 1));  // hf:0..L, block:0..L-1
    // BOS + ▁Once ▁upon ▁a ▁time (ids from the vocabulary; test_io derives them by BPE).
    EXPECT_EQ(r.start.prompt_ids, (std::vector<int32_t>{1, 403, 407, 261, 378}));
    EXPECT_EQ(r.end.text.rfind(", there was a little girl named Lily.", 0), 0u) << r.end.text;

    const Agreement a = compare_with_reference(r, ref);
    std::cout << "stories260K exact vs float64: " << describe(a) << "\n";
    ::testing::Test::RecordProperty("exact_max_rel", fmt_sci(a.max_rel));
    ::testing::Test::RecordProperty("exact_logits_max_abs", fmt_sci(a.max_logit_abs));
    EXPECT_LE(a.max_rel, kExactTol) << describe(a);
    EXPECT_EQ(a.argmax_mismatches, 0);
    EXPECT_LE(a.max_logit_abs, 1e-3);
    for (const auto& [label, e] : a.per_layer) EXPECT_LE(e, kExactTol) << label;
    // The comparison is sharp: a state taken one position off is far from the reference.
    std::vector<int32_t> seq = r.start.prompt_ids;
    for (const auto& t : r.tokens) seq.push_back(t.id);
    const auto states = ref.forward(seq);
    const size_t d = size_t(r.start.n_embd);
    const size_t last = r.start.layers.size() - 1;  // block:L-1
    const std::vector<double> got = to_double(std::span<const float>(r.states[5]).subspan(last * d, d));
    const int pos = r.tokens[5].position;
    EXPECT_LT(rel_err(got, states[size_t(pos)].block.back()), kExactTol);
    EXPECT_GT(rel_err(got, states[size_t(pos) - 1].block.back()), 1e-2);
    EXPECT_GT(rel_err(got, states[size_t(pos) + 1].block.back()), 1e-2);
}

TEST(CaptureCorrectness, StoriesFastPrecisionIsMeasured) {
    const auto path = pmtest::shared_model("stories260K.gguf");
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    GgufWeights w(path);
    RefLlama ref(w);
    auto model = cap::Model::load(path);
    const Recorded r = run_engine(model, cap::Precision::fast, "Once upon a time", kTokens);
    ASSERT_EQ(r.tokens.size(), size_t(kTokens));
    const Agreement a = compare_with_reference(r, ref);
    std::cout << "stories260K fast vs float64: " << describe(a) << "\n";
    ::testing::Test::RecordProperty("fast_max_rel", fmt_sci(a.max_rel));
    ::testing::Test::RecordProperty("fast_logits_max_abs", fmt_sci(a.max_logit_abs));
    // fast keeps an F16 KV cache (and may use flash attention): ~1e-3 relative, not 1e-5.
    EXPECT_LE(a.max_rel, 2e-2) << describe(a);
}

TEST(CaptureCorrectness, PrefillStatesMatchReferenceAtLastPosition) {
    const auto path = pmtest::shared_model("stories260K.gguf");
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    GgufWeights w(path);
    RefLlama ref(w);
    auto model = cap::Model::load(path);
    cap::EngineOptions eo;
    eo.precision = cap::Precision::exact;
    eo.layers = "hf:all,block:all";
    eo.n_threads = 1;
    eo.n_ctx = 128;  // stories260K's training context (a larger one is refused)
    cap::Engine engine(model, eo);
    const std::vector<int32_t> ids = {1, 403, 407, 261, 378, 267, 300, 317, 286};
    std::vector<float> logits;
    const std::vector<float> st = engine.prefill_states(ids, &logits);
    const auto states = ref.forward(ids);
    const size_t d = 64;
    ASSERT_EQ(st.size(), engine.layers().size() * d);
    double worst = 0.0;
    for (size_t l = 0; l < engine.layers().size(); ++l) {
        const std::vector<double> got = to_double(std::span<const float>(st).subspan(l * d, d));
        worst = std::max(worst, rel_err(got, ref_state(states.back(), engine.layers()[l].label)));
    }
    EXPECT_LE(worst, kExactTol);
    EXPECT_LE(max_abs_diff(states.back().logits, logits), 1e-3);
    std::cout << "prefill_states (9 tokens) max rel " << worst << "\n";
}

// ---------------------------------------------------------------- random tiny llama / qwen2

class TinyFullReference : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyFullReference, ExactMatchesFloat64Reference) {
    const std::string arch = GetParam();
    pmtest::TempDir tmp;
    const auto path = make_tiny(arch, tmp.path);
    if (path.empty()) GTEST_SKIP() << "llama.cpp vocab files (models/ggml-vocab-*.gguf) not found";
    GgufWeights w(path);
    RefLlama ref(w);
    auto model = cap::Model::load(path);
    const Recorded r = run_engine(model, cap::Precision::exact, "Once upon a time", 16);
    ASSERT_FALSE(r.tokens.empty());
    const Agreement a = compare_with_reference(r, ref);
    std::cout << arch << " tiny exact vs float64 (" << r.tokens.size() << " tokens): " << describe(a) << "\n";
    ::testing::Test::RecordProperty(arch + "_exact_max_rel", fmt_sci(a.max_rel));
    EXPECT_LE(a.max_rel, kExactTol) << describe(a);
    EXPECT_EQ(a.argmax_mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(Archs, TinyFullReference, ::testing::Values("llama", "llama3", "qwen2"),
                         [](const auto& info) { return info.param; });

// ---------------------------------------------------------------- output head, every arch

struct HeadAgreement {
    double logits_max_abs = 0.0;  // (a)
    double norm_max_rel = 0.0;    // (b)
    size_t n_tokens = 0;
    // The same measures with one ingredient of the head misread (-1: not applicable). Each must
    // be far outside the tolerance, or the check above would not notice that mistake.
    double wrong_norm_kind = -1;     // RMSNorm ↔ LayerNorm                         (norm rel)
    double no_norm_bias = -1;        // LayerNorm bias dropped                      (norm rel)
    double norm_w_plus_one = -1;     // gemma2: scaling by 1 + stored w             (norm rel)
    double no_output_bias = -1;      // output.bias dropped                         (logits abs)
    double no_softcap = -1;          // gemma2: final soft-cap dropped              (logits abs)
};

HeadAgreement check_head(const std::filesystem::path& path) {
    GgufWeights w(path);
    const RefOutputHead head(w);
    auto model = cap::Model::load(path);
    const Recorded r = run_engine(model, cap::Precision::exact, "Once upon a time", 8, "hf:last,block:last");
    EXPECT_EQ(r.start.layers.size(), 2u);
    const size_t d = size_t(r.start.n_embd);
    EXPECT_EQ(int(d), head.n_embd());
    EXPECT_EQ(r.start.n_vocab, head.n_vocab());
    size_t i_hf = 0, i_block = 1;
    if (r.start.layers[0].label.rfind("block:", 0) == 0) std::swap(i_hf, i_block);

    RefOutputHead wrong_kind = head, no_norm_b = head, w_plus_one = head, no_out_b = head, no_cap = head;
    wrong_kind.layer_norm = !head.layer_norm;
    no_norm_b.norm_b.clear();
    for (double& x : w_plus_one.norm_w) x += 1.0;
    no_out_b.output_b.clear();
    no_cap.final_softcap = 0.0;

    HeadAgreement h;
    const auto worst = [](double& acc, double v) { acc = std::max(acc, v); };
    h.wrong_norm_kind = 0.0;
    if (!head.norm_b.empty()) h.no_norm_bias = 0.0;
    if (head.arch == "gemma2") h.norm_w_plus_one = 0.0;
    if (!head.output_b.empty()) h.no_output_bias = 0.0;
    if (head.final_softcap > 0.0) h.no_softcap = 0.0;
    h.n_tokens = r.tokens.size();
    for (size_t t = 0; t < r.tokens.size(); ++t) {
        const std::span<const float> s(r.states[t]);
        const std::vector<double> hf_last = to_double(s.subspan(i_hf * d, d));
        const std::vector<double> block_last = to_double(s.subspan(i_block * d, d));
        const std::span<const float> lg(r.logits[t]);
        worst(h.logits_max_abs, max_abs_diff(head.logits(hf_last), lg));
        worst(h.norm_max_rel, rel_err(head.norm(block_last), hf_last));
        worst(h.wrong_norm_kind, rel_err(wrong_kind.norm(block_last), hf_last));
        if (h.no_norm_bias >= 0) worst(h.no_norm_bias, rel_err(no_norm_b.norm(block_last), hf_last));
        if (h.norm_w_plus_one >= 0) worst(h.norm_w_plus_one, rel_err(w_plus_one.norm(block_last), hf_last));
        if (h.no_output_bias >= 0) worst(h.no_output_bias, max_abs_diff(no_out_b.logits(hf_last), lg));
        if (h.no_softcap >= 0) worst(h.no_softcap, max_abs_diff(no_cap.logits(hf_last), lg));
    }
    return h;
}

constexpr double kLogitsTol = 1e-3;
constexpr double kNormTol = 1e-4;

void expect_head_agreement(const std::string& what, const HeadAgreement& h) {
    std::cout << what << " head over " << h.n_tokens << " tokens: logits max abs " << h.logits_max_abs
              << ", final norm max rel " << h.norm_max_rel << " | misread: norm kind " << h.wrong_norm_kind
              << ", no norm bias " << h.no_norm_bias << ", w+1 " << h.norm_w_plus_one << ", no output bias "
              << h.no_output_bias << ", no softcap " << h.no_softcap << " (-1: n/a)\n";
    ::testing::Test::RecordProperty(what + "_logits_max_abs", fmt_sci(h.logits_max_abs));
    ::testing::Test::RecordProperty(what + "_norm_max_rel", fmt_sci(h.norm_max_rel));
    EXPECT_GE(h.n_tokens, 1u);
    EXPECT_LE(h.logits_max_abs, kLogitsTol);
    EXPECT_LE(h.norm_max_rel, kNormTol);
    // Each misreading must fail its check by at least 10×.
    EXPECT_GT(h.wrong_norm_kind, 10 * kNormTol) << "RMSNorm vs LayerNorm is not distinguished";
    if (h.no_norm_bias >= 0) {
        EXPECT_GT(h.no_norm_bias, 10 * kNormTol);
    }
    if (h.norm_w_plus_one >= 0) {
        EXPECT_GT(h.norm_w_plus_one, 10 * kNormTol);
    }
    if (h.no_output_bias >= 0) {
        EXPECT_GT(h.no_output_bias, 10 * kLogitsTol);
    }
    if (h.no_softcap >= 0) {
        EXPECT_GT(h.no_softcap, 10 * kLogitsTol);
    }
}

TEST(CaptureCorrectness, StoriesOutputHeadAndFinalNorm) {
    const auto path = pmtest::shared_model("stories260K.gguf");
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    const HeadAgreement h = check_head(path);
    EXPECT_EQ(h.n_tokens, 8u);
    expect_head_agreement("stories260K", h);
}

class TinyHead : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyHead, OutputHeadAndFinalNormMatchLlamaCpp) {
    const std::string arch = GetParam();
    pmtest::TempDir tmp;
    const auto path = make_tiny(arch, tmp.path);
    if (path.empty()) GTEST_SKIP() << "llama.cpp vocab files (models/ggml-vocab-*.gguf) not found";
    const HeadAgreement h = check_head(path);
    expect_head_agreement(arch + "_tiny", h);
    // The ingredients this architecture must have exercised.
    if (arch == "gpt2" || arch == "gptneox" || arch == "phi2") {
        EXPECT_GE(h.no_norm_bias, 0.0) << "no LayerNorm bias";
    }
    if (arch == "phi2") {
        EXPECT_GE(h.no_output_bias, 0.0) << "no output bias";
    }
    if (arch == "gemma2") {
        EXPECT_GE(h.no_softcap, 0.0) << "no final soft-cap";
    }
}

INSTANTIATE_TEST_SUITE_P(Archs, TinyHead,
                         ::testing::Values("llama", "qwen2", "gemma2", "gpt2", "gptneox", "phi2", "phi3"),
                         [](const auto& info) { return info.param; });

TEST(CaptureCorrectness, GeneratorCoversTheHeadArchs) {
    // Every architecture the generator writes is checked by TinyHead above.
    const std::vector<std::string> checked = {"gemma2", "gpt2", "gptneox", "llama", "phi2", "phi3", "qwen2"};
    for (const std::string& a : gen::supported_archs())
        EXPECT_NE(std::find(checked.begin(), checked.end(), a), checked.end()) << a << " is not covered";
}

}  // namespace
