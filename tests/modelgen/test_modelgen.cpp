// Tests for the random-weight GGUF generator (include/phasemap/modelgen/modelgen.hpp): the files hold
// the metadata keys and tensors the pinned llama.cpp loader expects for each architecture,
// the tokenizer of the chosen vocab file, sane deterministic weights, and failures leave no file.
//
// The expected tensor tables below are written out by hand from llama.cpp's loaders
// (src/models/<arch>.cpp, load_arch_tensors) rather than taken from tensor_layout(), so the test
// checks the generator against llama.cpp and not against itself.
#include <gguf.h>
#include <ggml.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "phasemap/modelgen/modelgen.hpp"
#include "support/paths.hpp"

namespace mg = phasemap::modelgen;
namespace fs = std::filesystem;
using pmtest::TempDir;

namespace {

fs::path vocab_dir() { return pmtest::llama_src_dir() / "models"; }

#define SKIP_WITHOUT_VOCABS()                                                                  \
    do {                                                                                       \
        if (!fs::is_directory(vocab_dir()))                                                    \
            GTEST_SKIP() << "llama.cpp vocab files not found in " << vocab_dir().string();     \
    } while (0)

// A GGUF file opened with gguf.h; with_data also loads the tensor data into a ggml context.
struct Gguf {
    gguf_context* g = nullptr;
    ggml_context* data = nullptr;
    explicit Gguf(const fs::path& p, bool with_data = false) {
        gguf_init_params ip{/*no_alloc =*/!with_data, /*ctx =*/with_data ? &data : nullptr};
        g = gguf_init_from_file(p.c_str(), ip);
        if (!g) throw std::runtime_error("cannot read GGUF " + p.string());
    }
    ~Gguf() {
        gguf_free(g);
        if (data) ggml_free(data);
    }
    Gguf(const Gguf&) = delete;
    Gguf& operator=(const Gguf&) = delete;

    int64_t key(const std::string& k) const { return gguf_find_key(g, k.c_str()); }
    std::string str(const std::string& k) const {
        const int64_t i = key(k);
        return i < 0 ? std::string() : gguf_get_val_str(g, i);
    }
    uint32_t u32(const std::string& k) const { return gguf_get_val_u32(g, key(k)); }
    std::vector<int64_t> shape(const std::string& name) const {
        const int64_t id = gguf_find_tensor(g, name.c_str());
        if (id < 0) return {};
        const int64_t* ne = gguf_get_tensor_ne(g, id);
        std::vector<int64_t> s(ne, ne + GGML_MAX_DIMS);
        while (s.size() > 1 && s.back() == 1) s.pop_back();
        return s;
    }
    // Tensor values as floats (F32 or F16).
    std::vector<float> values(const std::string& name) const {
        const ggml_tensor* t = ggml_get_tensor(data, name.c_str());
        if (!t) throw std::runtime_error("no tensor " + name);
        std::vector<float> v(size_t(ggml_nelements(t)));
        if (t->type == GGML_TYPE_F32) {
            const auto* p = static_cast<const float*>(t->data);
            v.assign(p, p + v.size());
        } else {
            const auto* p = static_cast<const ggml_fp16_t*>(t->data);
            for (size_t i = 0; i < v.size(); ++i) v[i] = ggml_fp16_to_fp32(p[i]);
        }
        return v;
    }
};

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::vector<std::string> dir_entries(const fs::path& dir) {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
    return v;
}

using Shape = std::vector<int64_t>;

// Tiny presets: d 64, 4 heads of 16, 4 blocks, context 512.
constexpr int64_t D = 64, CTX = 512, N_LAYER = 4;

// Block-0 tensors (name after "blk.0.") the loader of each arch creates for the tiny preset.
std::map<std::string, Shape> expected_block(const std::string& arch) {
    const int64_t kv = 32;  // 2 KV heads x 16 for the GQA archs
    if (arch == "llama")
        return {{"attn_norm.weight", {D}},         {"attn_q.weight", {D, D}},    {"attn_k.weight", {D, kv}},
                {"attn_v.weight", {D, kv}},        {"attn_output.weight", {D, D}}, {"ffn_norm.weight", {D}},
                {"ffn_gate.weight", {D, 128}},     {"ffn_up.weight", {D, 128}},  {"ffn_down.weight", {128, D}}};
    if (arch == "qwen2")
        return {{"attn_norm.weight", {D}},     {"attn_q.weight", {D, D}},       {"attn_k.weight", {D, kv}},
                {"attn_v.weight", {D, kv}},    {"attn_q.bias", {D}},            {"attn_k.bias", {kv}},
                {"attn_v.bias", {kv}},         {"attn_output.weight", {D, D}},  {"ffn_norm.weight", {D}},
                {"ffn_gate.weight", {D, 128}}, {"ffn_up.weight", {D, 128}},     {"ffn_down.weight", {128, D}}};
    if (arch == "gemma2")
        return {{"attn_norm.weight", {D}},          {"attn_q.weight", {D, D}},     {"attn_k.weight", {D, kv}},
                {"attn_v.weight", {D, kv}},         {"attn_output.weight", {D, D}},
                {"post_attention_norm.weight", {D}}, {"ffn_norm.weight", {D}},     {"ffn_gate.weight", {D, 128}},
                {"ffn_up.weight", {D, 128}},        {"ffn_down.weight", {128, D}}, {"post_ffw_norm.weight", {D}}};
    if (arch == "gpt2" || arch == "gptneox")
        return {{"attn_norm.weight", {D}},        {"attn_norm.bias", {D}},       {"attn_qkv.weight", {D, 3 * D}},
                {"attn_qkv.bias", {3 * D}},       {"attn_output.weight", {D, D}}, {"attn_output.bias", {D}},
                {"ffn_norm.weight", {D}},         {"ffn_norm.bias", {D}},        {"ffn_up.weight", {D, 256}},
                {"ffn_up.bias", {256}},           {"ffn_down.weight", {256, D}}, {"ffn_down.bias", {D}}};
    if (arch == "phi2")
        return {{"attn_norm.weight", {D}},    {"attn_norm.bias", {D}},         {"attn_q.weight", {D, D}},
                {"attn_k.weight", {D, D}},    {"attn_v.weight", {D, D}},       {"attn_q.bias", {D}},
                {"attn_k.bias", {D}},         {"attn_v.bias", {D}},            {"attn_output.weight", {D, D}},
                {"attn_output.bias", {D}},    {"ffn_up.weight", {D, 256}},     {"ffn_up.bias", {256}},
                {"ffn_down.weight", {256, D}}, {"ffn_down.bias", {D}}};
    if (arch == "phi3")
        return {{"attn_norm.weight", {D}},       {"attn_qkv.weight", {D, D + 2 * kv}}, {"attn_output.weight", {D, D}},
                {"ffn_norm.weight", {D}},        {"ffn_up.weight", {D, 2 * 128}},    {"ffn_down.weight", {128, D}}};
    return {};
}

// Non-block tensors, with V standing for the vocab size.
std::map<std::string, Shape> expected_global(const std::string& arch, int64_t V) {
    std::map<std::string, Shape> m{{"token_embd.weight", {D, V}}, {"output_norm.weight", {D}}};
    if (arch == "gpt2") m["position_embd.weight"] = {D, CTX};
    if (arch == "gpt2" || arch == "gptneox" || arch == "phi2") m["output_norm.bias"] = {D};
    if (arch == "gptneox" || arch == "phi2" || arch == "phi3") m["output.weight"] = {D, V};  // untied
    if (arch == "phi2") m["output.bias"] = {V};
    return m;
}

// Hyper-parameter keys llama.cpp reads for each arch (required ones and those the converters write).
std::vector<std::string> expected_keys(const std::string& a) {
    std::vector<std::string> k{"context_length", "embedding_length", "block_count", "feed_forward_length",
                               "attention.head_count"};
    if (a == "llama" || a == "qwen2" || a == "gemma2" || a == "phi3")
        k.insert(k.end(), {"attention.head_count_kv", "attention.layer_norm_rms_epsilon"});
    else
        k.push_back("attention.layer_norm_epsilon");
    if (a == "gemma2")
        k.insert(k.end(), {"attn_logit_softcapping", "final_logit_softcapping", "attention.sliding_window",
                           "attention.key_length", "attention.value_length"});
    if (a == "gptneox") k.insert(k.end(), {"use_parallel_residual", "rope.dimension_count"});
    if (a == "phi2" || a == "phi3" || a == "llama") k.push_back("rope.dimension_count");
    if (a == "llama" || a == "qwen2" || a == "phi3") k.push_back("rope.freq_base");
    for (auto& s : k) s = a + "." + s;
    return k;
}

double mean_of(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += x;
    return s / double(v.size());
}
double std_of(const std::vector<float>& v) {
    const double m = mean_of(v);
    double s = 0;
    for (float x : v) s += (x - m) * (x - m);
    return std::sqrt(s / double(v.size()));
}

}  // namespace

// ---------------------------------------------------------------- presets and layouts (no files)

TEST(ModelgenSpec, SupportedArchsAndSizes) {
    const auto archs = mg::supported_archs();
    for (const char* a : {"llama", "qwen2", "gemma2", "gpt2", "gptneox", "phi2", "phi3"})
        EXPECT_NE(std::find(archs.begin(), archs.end(), a), archs.end()) << a;
    for (const auto& a : archs) {
        const auto sizes = mg::supported_sizes(a);
        ASSERT_FALSE(sizes.empty());
        EXPECT_EQ(sizes.front(), "tiny");
        for (const auto& s : sizes) EXPECT_NO_THROW(mg::validate(mg::preset(a, s))) << a << " " << s;
    }
    for (const char* a : {"llama", "qwen2", "gpt2"}) EXPECT_NO_THROW(mg::preset(a, "real"));
}

TEST(ModelgenSpec, TinyPresetShapes) {
    for (const auto& a : mg::supported_archs()) {
        const mg::ModelSpec s = mg::preset(a, "tiny");
        EXPECT_EQ(s.n_embd, 64u) << a;
        EXPECT_EQ(s.n_layer, 4u) << a;
        EXPECT_EQ(s.n_head, 4u) << a;
        EXPECT_GE(s.n_ctx, 256u) << a;
        EXPECT_EQ(s.type, mg::WeightType::f32) << a;
        const bool gqa = a == "llama" || a == "qwen2" || a == "gemma2" || a == "phi3";
        EXPECT_EQ(s.n_head_kv, gqa ? 2u : 4u) << a;
    }
}

// The real presets reproduce the published parameter counts of the models they imitate.
TEST(ModelgenSpec, RealPresetsMatchPublishedParameterCounts) {
    auto params = [](const mg::ModelSpec& s, uint32_t n_vocab) {
        uint64_t n = 0;
        for (const auto& t : mg::tensor_layout(s, n_vocab)) {
            uint64_t e = 1;
            for (int64_t x : t.shape) e *= uint64_t(x);
            n += e;
        }
        return n;
    };
    const mg::ModelSpec qwen = mg::preset("qwen2", "real");
    EXPECT_EQ(qwen.n_embd, 896u);
    EXPECT_EQ(qwen.n_layer, 24u);
    EXPECT_EQ(qwen.n_head, 14u);
    EXPECT_EQ(qwen.n_head_kv, 2u);
    EXPECT_EQ(qwen.n_ff, 4864u);
    EXPECT_TRUE(qwen.tied_embeddings);
    EXPECT_FLOAT_EQ(qwen.rope_theta, 1e6f);
    EXPECT_FLOAT_EQ(qwen.norm_eps, 1e-6f);
    EXPECT_EQ(qwen.type, mg::WeightType::f16);
    EXPECT_EQ(params(qwen, 151936), 494032768u);  // Qwen2.5-0.5B

    const mg::ModelSpec llama = mg::preset("llama", "real");
    EXPECT_EQ(llama.n_embd, 2048u);
    EXPECT_EQ(llama.n_layer, 16u);
    EXPECT_EQ(llama.n_head_kv, 8u);
    EXPECT_FLOAT_EQ(llama.rope_theta, 5e5f);
    // Llama-3.2-1B: 1,235,814,400 weights plus the 32 rope scaling factors of rope_freqs.
    EXPECT_EQ(params(llama, 128256), 1235814400u + 32u);

    const mg::ModelSpec gpt2 = mg::preset("gpt2", "real");
    EXPECT_EQ(gpt2.n_ctx, 1024u);
    EXPECT_EQ(params(gpt2, 50257), 124439808u);  // GPT-2 small
}

TEST(ModelgenSpec, F16StoresMatricesOnly) {
    mg::ModelSpec s = mg::preset("gpt2", "tiny");
    s.type = mg::WeightType::f16;
    for (const auto& t : mg::tensor_layout(s, 1000)) EXPECT_EQ(t.f16, t.shape.size() == 2) << t.name;
}

TEST(ModelgenSpec, RejectsBadInput) {
    try {
        mg::preset("mamba", "tiny");
        FAIL() << "no exception";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("unknown architecture 'mamba'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("qwen2"), std::string::npos) << "lists the supported archs";
    }
    EXPECT_THROW(mg::preset("phi2", "real"), std::invalid_argument);
    EXPECT_THROW(mg::preset("llama", "huge"), std::invalid_argument);
    EXPECT_THROW(mg::parse_weight_type("q4_0"), std::invalid_argument);
    EXPECT_EQ(mg::parse_weight_type("f16"), mg::WeightType::f16);

    mg::ModelSpec s = mg::preset("llama", "tiny");
    s.n_head_kv = 3;  // 4 heads are not a multiple of 3
    EXPECT_THROW(mg::validate(s), std::invalid_argument);
    s = mg::preset("gemma2", "tiny");
    s.tied_embeddings = false;
    EXPECT_THROW(mg::validate(s), std::invalid_argument);
    s = mg::preset("gpt2", "tiny");
    s.n_head_kv = 2;
    EXPECT_THROW(mg::validate(s), std::invalid_argument);
    s = mg::preset("phi2", "tiny");
    s.n_rot = 7;
    EXPECT_THROW(mg::validate(s), std::invalid_argument);
}

// ---------------------------------------------------------------- every arch, written and read back

class ModelgenArch : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelgenArch, WritesWhatLlamaCppExpects) {
    SKIP_WITHOUT_VOCABS();
    const std::string arch = GetParam();
    TempDir tmp;
    const fs::path out = tmp / (arch + ".gguf");
    const mg::ModelSpec spec = mg::preset(arch, "tiny");
    const mg::WriteResult r = mg::write_random_model(spec, vocab_dir(), out);

    ASSERT_TRUE(fs::is_regular_file(out));
    EXPECT_EQ(fs::file_size(out), r.file_bytes);
    EXPECT_EQ(dir_entries(tmp.path), std::vector<std::string>{arch + ".gguf"}) << "no temporary file left";

    const fs::path vfile = vocab_dir() / ("ggml-vocab-" + spec.vocab + ".gguf");
    EXPECT_EQ(r.vocab_file, vfile);
    Gguf vocab(vfile);
    const int64_t vtok = vocab.key("tokenizer.ggml.tokens");
    ASSERT_GE(vtok, 0);
    const int64_t V = int64_t(gguf_get_arr_n(vocab.g, vtok));
    EXPECT_EQ(int64_t(r.n_vocab), V);
    EXPECT_EQ(int64_t(mg::vocab_size(vfile)), V);

    Gguf m(out);
    EXPECT_EQ(m.str("general.architecture"), arch);
    EXPECT_EQ(m.u32("general.file_type"), 0u);  // LLAMA_FTYPE_ALL_F32

    // hyper-parameters
    for (const auto& k : expected_keys(arch)) EXPECT_GE(m.key(k), 0) << "missing key " << k;
    EXPECT_EQ(m.u32(arch + ".embedding_length"), uint32_t(D));
    EXPECT_EQ(m.u32(arch + ".block_count"), uint32_t(N_LAYER));
    EXPECT_EQ(m.u32(arch + ".context_length"), uint32_t(CTX));
    EXPECT_EQ(m.u32(arch + ".attention.head_count"), 4u);

    // tokenizer: every tokenizer.* key of the vocab file, same type, same size/value
    int n_tok_keys = 0;
    for (int64_t i = 0; i < gguf_get_n_kv(vocab.g); ++i) {
        const std::string k = gguf_get_key(vocab.g, i);
        if (k.rfind("tokenizer.", 0) != 0) continue;
        ++n_tok_keys;
        const int64_t j = m.key(k);
        ASSERT_GE(j, 0) << "tokenizer key not copied: " << k;
        ASSERT_EQ(gguf_get_kv_type(m.g, j), gguf_get_kv_type(vocab.g, i)) << k;
        switch (gguf_get_kv_type(vocab.g, i)) {
            case GGUF_TYPE_ARRAY:
                EXPECT_EQ(gguf_get_arr_type(m.g, j), gguf_get_arr_type(vocab.g, i)) << k;
                EXPECT_EQ(gguf_get_arr_n(m.g, j), gguf_get_arr_n(vocab.g, i)) << k;
                break;
            case GGUF_TYPE_STRING: EXPECT_STREQ(gguf_get_val_str(m.g, j), gguf_get_val_str(vocab.g, i)) << k; break;
            case GGUF_TYPE_UINT32: EXPECT_EQ(gguf_get_val_u32(m.g, j), gguf_get_val_u32(vocab.g, i)) << k; break;
            case GGUF_TYPE_BOOL: EXPECT_EQ(gguf_get_val_bool(m.g, j), gguf_get_val_bool(vocab.g, i)) << k; break;
            default: break;
        }
    }
    EXPECT_GE(n_tok_keys, 4);
    EXPECT_FALSE(m.str("tokenizer.ggml.model").empty());
    EXPECT_FALSE(m.str("tokenizer.ggml.pre").empty()) << "llama.cpp warns without a pre-tokenizer";
    EXPECT_EQ(int64_t(gguf_get_arr_n(m.g, m.key("tokenizer.ggml.tokens"))), V);

    // tensors: exactly the globals plus n_layer copies of the block table, with their shapes
    const auto glob = expected_global(arch, V);
    const auto block = expected_block(arch);
    ASSERT_FALSE(block.empty());
    EXPECT_EQ(gguf_get_n_tensors(m.g), int64_t(glob.size() + N_LAYER * block.size()));
    EXPECT_EQ(int64_t(r.n_tensors), gguf_get_n_tensors(m.g));
    for (const auto& [name, shape] : glob) EXPECT_EQ(m.shape(name), shape) << name;
    for (int64_t b = 0; b < N_LAYER; ++b)
        for (const auto& [name, shape] : block) {
            const std::string full = "blk." + std::to_string(b) + "." + name;
            EXPECT_EQ(m.shape(full), shape) << full;
            EXPECT_EQ(gguf_get_tensor_type(m.g, gguf_find_tensor(m.g, full.c_str())), GGML_TYPE_F32) << full;
        }

    // the layout API agrees with the file (names in file order)
    const auto layout = mg::tensor_layout(spec, uint32_t(V));
    ASSERT_EQ(int64_t(layout.size()), gguf_get_n_tensors(m.g));
    for (size_t i = 0; i < layout.size(); ++i) EXPECT_EQ(layout[i].name, gguf_get_tensor_name(m.g, int64_t(i)));
}

TEST_P(ModelgenArch, WeightsAreFiniteAndScaledLikeAnInit) {
    SKIP_WITHOUT_VOCABS();
    const std::string arch = GetParam();
    TempDir tmp;
    const fs::path out = tmp / "m.gguf";
    mg::write_random_model(mg::preset(arch, "tiny"), vocab_dir(), out);
    Gguf m(out, /*with_data =*/true);
    for (int64_t i = 0; i < gguf_get_n_tensors(m.g); ++i) {
        const std::string name = gguf_get_tensor_name(m.g, i);
        const auto v = m.values(name);
        for (float x : v) ASSERT_TRUE(std::isfinite(x)) << name;
        if (name.ends_with("norm.weight")) {
            EXPECT_NEAR(mean_of(v), 1.0, 0.01) << name;
        } else if (name.ends_with(".bias")) {
            EXPECT_NEAR(mean_of(v), 0.0, 0.01) << name;
            EXPECT_LT(std_of(v), 0.05) << name;
        }
    }
    const auto emb = m.values("token_embd.weight");
    EXPECT_NEAR(std_of(emb), 0.02, 0.001);
    EXPECT_NEAR(mean_of(emb), 0.0, 0.001);
    // residual-stream output projections are scaled down by 1/sqrt(2 * n_layer)
    const auto wo = m.values("blk.0.attn_output.weight");
    EXPECT_NEAR(std_of(wo), 0.02 / std::sqrt(2.0 * N_LAYER), 0.0015);
}

INSTANTIATE_TEST_SUITE_P(AllArchs, ModelgenArch, ::testing::ValuesIn(mg::supported_archs()),
                         [](const auto& info) { return info.param; });

// ---------------------------------------------------------------- determinism, types, errors

TEST(ModelgenWrite, SameSeedSameBytesDifferentSeedDifferentWeights) {
    SKIP_WITHOUT_VOCABS();
    TempDir tmp;
    mg::ModelSpec s = mg::preset("gemma2", "tiny");
    s.seed = 7;
    mg::write_random_model(s, vocab_dir(), tmp / "a.gguf");
    mg::write_random_model(s, vocab_dir(), tmp / "b.gguf");
    s.seed = 8;
    mg::write_random_model(s, vocab_dir(), tmp / "c.gguf");
    const std::string a = slurp(tmp / "a.gguf"), b = slurp(tmp / "b.gguf"), c = slurp(tmp / "c.gguf");
    ASSERT_FALSE(a.empty());
    EXPECT_TRUE(a == b) << "same seed must give byte-identical files";
    EXPECT_EQ(a.size(), c.size());
    EXPECT_FALSE(a == c);

    Gguf ga(tmp / "a.gguf", true), gc(tmp / "c.gguf", true);
    for (const char* t : {"token_embd.weight", "blk.0.attn_q.weight", "blk.3.ffn_down.weight", "output_norm.weight"})
        EXPECT_NE(ga.values(t), gc.values(t)) << t;
}

TEST(ModelgenWrite, F16Weights) {
    SKIP_WITHOUT_VOCABS();
    TempDir tmp;
    mg::ModelSpec s = mg::preset("qwen2", "tiny");
    s.type = mg::WeightType::f16;
    mg::write_random_model(s, vocab_dir(), tmp / "m.gguf");
    Gguf m(tmp / "m.gguf", true);
    EXPECT_EQ(m.u32("general.file_type"), 1u);  // LLAMA_FTYPE_MOSTLY_F16
    auto type = [&](const char* n) { return gguf_get_tensor_type(m.g, gguf_find_tensor(m.g, n)); };
    EXPECT_EQ(type("token_embd.weight"), GGML_TYPE_F16);
    EXPECT_EQ(type("blk.0.attn_q.weight"), GGML_TYPE_F16);
    EXPECT_EQ(type("blk.0.attn_q.bias"), GGML_TYPE_F32);
    EXPECT_EQ(type("blk.0.attn_norm.weight"), GGML_TYPE_F32);
    EXPECT_NEAR(std_of(m.values("blk.0.ffn_up.weight")), 0.02, 0.002);
}

TEST(ModelgenWrite, UnknownArchThrowsAndWritesNothing) {
    SKIP_WITHOUT_VOCABS();
    TempDir tmp;
    mg::ModelSpec s = mg::preset("llama", "tiny");
    s.arch = "nonexistent";
    EXPECT_THROW(mg::write_random_model(s, vocab_dir(), tmp / "m.gguf"), std::invalid_argument);
    EXPECT_TRUE(dir_entries(tmp.path).empty());
}

TEST(ModelgenWrite, BadOutputPathsThrowAndLeaveNoFile) {
    SKIP_WITHOUT_VOCABS();
    TempDir tmp;
    const mg::ModelSpec s = mg::preset("gpt2", "tiny");
    try {
        mg::write_random_model(s, vocab_dir(), tmp / "missing-dir" / "m.gguf");
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
    }
    fs::create_directory(tmp / "adir");
    EXPECT_THROW(mg::write_random_model(s, vocab_dir(), tmp / "adir"), std::runtime_error);
    EXPECT_EQ(dir_entries(tmp.path), std::vector<std::string>{"adir"});
    EXPECT_TRUE(dir_entries(tmp / "adir").empty());
}

TEST(ModelgenWrite, MissingVocabKeepsExistingFileUntouched) {
    SKIP_WITHOUT_VOCABS();
    TempDir tmp;
    const fs::path out = tmp / "m.gguf";
    std::ofstream(out) << "previous contents";
    try {
        mg::write_random_model(mg::preset("llama", "tiny"), tmp / "no-vocabs-here", out);
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("vocab file not found"), std::string::npos) << e.what();
    }
    EXPECT_EQ(slurp(out), "previous contents");
    EXPECT_EQ(dir_entries(tmp.path), std::vector<std::string>{"m.gguf"});

    // a successful write replaces it
    mg::write_random_model(mg::preset("llama", "tiny"), vocab_dir(), out);
    EXPECT_GT(fs::file_size(out), 1000000u);
    EXPECT_EQ(dir_entries(tmp.path), std::vector<std::string>{"m.gguf"});
}

TEST(ModelgenWrite, VocabOverride) {
    SKIP_WITHOUT_VOCABS();
    TempDir tmp;
    mg::ModelSpec s = mg::preset("llama", "tiny");
    s.vocab = "llama-spm";
    const auto r = mg::write_random_model(s, vocab_dir(), tmp / "m.gguf");
    EXPECT_EQ(r.n_vocab, 32000u);
    Gguf m(tmp / "m.gguf");
    EXPECT_EQ(m.str("tokenizer.ggml.model"), "llama");
    EXPECT_EQ(m.shape("token_embd.weight"), (Shape{D, 32000}));
}

TEST(ModelgenVocabDir, EnvironmentOverrideComesFirst) {
    ::setenv("PHASEMAP_VOCAB_DIR", "/some/where", 1);
    const auto c = mg::vocab_dir_candidates("abc123");
    ::unsetenv("PHASEMAP_VOCAB_DIR");
    ASSERT_FALSE(c.empty());
    EXPECT_EQ(c.front(), fs::path("/some/where"));
    EXPECT_EQ(c.back().filename(), "models");
    EXPECT_NE(c.back().string().find("llama.cpp-abc123"), std::string::npos);
}

// ---------------------------------------------------------------- CLI

TEST(ModelgenCli, ListAndWrite) {
    SKIP_WITHOUT_VOCABS();
    const auto list = pmtest::run_phasemap({"make-model", "--list"});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    for (const auto& a : mg::supported_archs()) EXPECT_NE(list.out.find(a), std::string::npos) << a;

    TempDir tmp;
    const fs::path out = tmp / "m.gguf";
    const auto r = pmtest::run_phasemap({"make-model", "--arch", "phi3", "--size", "tiny", "--seed", "3", "--type",
                                         "f16", "--vocab-dir", vocab_dir().string(), "-o", out.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("wrote"), std::string::npos);
    Gguf m(out);
    EXPECT_EQ(m.str("general.architecture"), "phi3");
    EXPECT_EQ(m.u32("general.file_type"), 1u);

    // the library with the same spec gives the same bytes
    mg::ModelSpec s = mg::preset("phi3", "tiny");
    s.seed = 3;
    s.type = mg::WeightType::f16;
    mg::write_random_model(s, vocab_dir(), tmp / "lib.gguf");
    EXPECT_TRUE(slurp(out) == slurp(tmp / "lib.gguf"));
}

TEST(ModelgenCli, UserErrors) {
    TempDir tmp;
    const std::string out = (tmp / "m.gguf").string();
    auto r = pmtest::run_phasemap({"make-model", "--arch", "mamba", "-o", out});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("unknown architecture 'mamba'"), std::string::npos) << r.err;
    r = pmtest::run_phasemap({"make-model", "--arch", "llama", "--size", "huge", "-o", out});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("unknown size 'huge'"), std::string::npos) << r.err;
    r = pmtest::run_phasemap({"make-model", "--arch", "llama"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("--output"), std::string::npos) << r.err;
    r = pmtest::run_phasemap({"make-model", "--arch", "llama", "--vocab-dir", (tmp / "none").string(), "-o", out});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("vocab file not found"), std::string::npos) << r.err;
    EXPECT_TRUE(dir_entries(tmp.path).empty());
}
