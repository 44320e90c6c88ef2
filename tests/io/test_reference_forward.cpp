// The float64 reference forward pass (tests/support/ref_llama) proven on its own, without
// llama.cpp: on stories260K, greedy decoding from BOS + "Once upon a time" must reproduce the
// golden continuation of llama2.c's run.c (shared/models/README.md) token for token.
// Also covers GgufWeights (metadata getters, F32/F16 tensors, clear errors).
#include <gtest/gtest.h>
#include <ggml.h>
#include <gguf.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <iostream>
#include <span>
#include <cmath>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/gguf_weights.hpp"
#include "support/paths.hpp"
#include "support/ref_llama.hpp"

namespace {

using pmtest::GgufWeights;
using pmtest::RefLlama;

// The golden text of shared/models/README.md (prompt + greedy continuation), one line.
const std::string kGolden =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.";

const std::string kSpace = "\xE2\x96\x81";  // U+2581 '▁', SentencePiece's whitespace marker

// Minimal SentencePiece (BPE-by-score, llama2.c's encode()) tokenizer over the GGUF vocabulary:
// dummy-prefix, spaces → '▁', split into code points (byte fallback <0xNN> for unknown ones),
// then repeatedly merge the adjacent pair whose concatenation is a vocabulary piece with the
// highest score. Decoding maps pieces back ('▁' → ' ', <0xNN> → byte).
class SpmVocab {
public:
    explicit SpmVocab(const GgufWeights& w)
        : pieces_(w.get_string_array("tokenizer.ggml.tokens")), scores_(w.get_float_array("tokenizer.ggml.scores")) {
        for (size_t i = 0; i < pieces_.size(); ++i) index_.emplace(pieces_[i], static_cast<int32_t>(i));  // first id wins
    }

    int32_t id(const std::string& piece) const {
        auto it = index_.find(piece);
        return it == index_.end() ? -1 : it->second;
    }

    std::vector<int32_t> encode(const std::string& text) const {
        std::string s = kSpace;
        for (char c : text) s += (c == ' ') ? kSpace : std::string(1, c);
        std::vector<int32_t> ids;
        for (size_t i = 0; i < s.size();) {
            const unsigned char c = static_cast<unsigned char>(s[i]);
            const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
            const std::string cp = s.substr(i, len);
            if (int32_t t = id(cp); t >= 0) {
                ids.push_back(t);
            } else {
                for (unsigned char b : cp) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
                    const int32_t bt = id(buf);
                    if (bt < 0) throw std::runtime_error("no byte-fallback token for a byte");
                    ids.push_back(bt);
                }
            }
            i += len;
        }
        for (;;) {
            double best = -INFINITY;
            int32_t best_id = -1;
            size_t best_i = 0;
            for (size_t i = 0; i + 1 < ids.size(); ++i) {
                const int32_t t = id(pieces_[static_cast<size_t>(ids[i])] + pieces_[static_cast<size_t>(ids[i + 1])]);
                if (t >= 0 && scores_[static_cast<size_t>(t)] > best) {
                    best = scores_[static_cast<size_t>(t)];
                    best_id = t;
                    best_i = i;
                }
            }
            if (best_id < 0) break;
            ids[best_i] = best_id;
            ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_i) + 1);
        }
        return ids;
    }

    // Text of `ids` (no BOS), with the dummy-prefix space of the first piece removed.
    std::string decode(const std::vector<int32_t>& ids) const {
        std::string out;
        for (int32_t t : ids) {
            const std::string& p = pieces_.at(static_cast<size_t>(t));
            if (p.size() == 6 && p.rfind("<0x", 0) == 0 && p.back() == '>') {
                out += static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16));
                continue;
            }
            for (size_t i = 0; i < p.size();) {
                if (p.compare(i, kSpace.size(), kSpace) == 0) {
                    out += ' ';
                    i += kSpace.size();
                } else {
                    out += p[i++];
                }
            }
        }
        if (!out.empty() && out[0] == ' ') out.erase(0, 1);
        return out;
    }

    const std::string& piece(int32_t id) const { return pieces_.at(static_cast<size_t>(id)); }

private:
    std::vector<std::string> pieces_;
    std::vector<double> scores_;
    std::map<std::string, int32_t> index_;
};

std::string stories_or_empty() { return pmtest::shared_model("stories260K.gguf").string(); }

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

// ---------------------------------------------------------------- GgufWeights

TEST(GgufWeights, ReadsStoriesMetadataAndTensors) {
    const std::string path = stories_or_empty();
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    GgufWeights w(path);
    EXPECT_EQ(w.architecture(), "llama");
    EXPECT_EQ(w.get_u32("llama.embedding_length"), 64u);
    EXPECT_EQ(w.get_u32("llama.block_count"), 5u);
    EXPECT_EQ(w.get_u32("llama.attention.head_count"), 8u);
    EXPECT_EQ(w.get_u32("llama.attention.head_count_kv"), 4u);
    EXPECT_EQ(w.get_u32("llama.feed_forward_length"), 172u);
    EXPECT_NEAR(w.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-12);
    EXPECT_EQ(w.get_string("tokenizer.ggml.model"), "llama");
    EXPECT_EQ(w.get_string_array("tokenizer.ggml.tokens").size(), 512u);
    EXPECT_EQ(w.get_string_array("tokenizer.ggml.tokens")[1], "<s>");
    EXPECT_EQ(w.get_int_array("tokenizer.ggml.token_type").size(), 512u);

    const auto& info = w.tensor_info("blk.0.attn_k.weight");
    EXPECT_EQ(info.type_name, "f32");
    EXPECT_EQ(info.ne[0], 64);
    EXPECT_EQ(info.ne[1], 32);  // 4 KV heads × head_dim 8
    EXPECT_EQ(info.n_dims, 2);
    std::array<int64_t, 4> ne{};
    const std::vector<double> norm = w.tensor_data("output_norm.weight", &ne);
    EXPECT_EQ(ne[0], 64);
    ASSERT_EQ(norm.size(), 64u);
    EXPECT_TRUE(std::all_of(norm.begin(), norm.end(), [](double v) { return std::isfinite(v); }));
    EXPECT_EQ(w.tensors().size(), 3u + 5u * 9u);
}

TEST(GgufWeights, ClearErrors) {
    const std::string path = stories_or_empty();
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    GgufWeights w(path);
    try {
        (void)w.tensor("blk.9.attn_q.weight");
        FAIL() << "missing tensor did not throw";
    } catch (const std::out_of_range& e) {
        EXPECT_NE(std::string(e.what()).find("blk.9.attn_q.weight"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(w.find_tensor("output.bias").has_value());
    EXPECT_THROW((void)w.get_u32("llama.no_such_key"), std::out_of_range);
    EXPECT_THROW((void)w.get_string("llama.block_count"), std::runtime_error);  // u32, not a string
    EXPECT_THROW((void)w.get_u32("general.architecture"), std::runtime_error);
    EXPECT_FALSE(w.find_float("llama.rope.freq_base").has_value());
    EXPECT_THROW(GgufWeights("/nonexistent/model.gguf"), std::runtime_error);
    pmtest::TempDir tmp;
    {
        std::FILE* f = std::fopen((tmp / "junk.gguf").c_str(), "wb");
        ASSERT_NE(f, nullptr);
        std::fputs("this is not a gguf file at all", f);
        std::fclose(f);
    }
    EXPECT_THROW(GgufWeights((tmp / "junk.gguf").string()), std::runtime_error);
}

// Writes a small GGUF with ggml's writer (F32 and F16 tensors, several metadata types) and reads
// it back: values, shapes and the F16 → float64 conversion must round-trip.
TEST(GgufWeights, RoundTripsF32F16AndMetadata) {
    pmtest::TempDir tmp;
    const std::string file = (tmp / "small.gguf").string();
    {
        ggml_init_params ip{/*mem_size=*/1 << 20, /*mem_buffer=*/nullptr, /*no_alloc=*/false};
        ggml_context* ctx = ggml_init(ip);
        ggml_tensor* a = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 3, 2);
        ggml_set_name(a, "a.weight");
        ggml_tensor* h = ggml_new_tensor_1d(ctx, GGML_TYPE_F16, 4);
        ggml_set_name(h, "h.weight");
        for (int i = 0; i < 6; ++i) static_cast<float*>(a->data)[i] = 0.5f * static_cast<float>(i) - 1.25f;
        const float hv[4] = {1.0f, -2.5f, 0.099975586f, 65504.0f};  // all exactly representable in f16
        for (int i = 0; i < 4; ++i) static_cast<ggml_fp16_t*>(h->data)[i] = ggml_fp32_to_fp16(hv[i]);
        gguf_context* g = gguf_init_empty();
        gguf_set_val_str(g, "general.architecture", "toy");
        gguf_set_val_u32(g, "toy.block_count", 7);
        gguf_set_val_i32(g, "toy.signed", -3);
        gguf_set_val_f32(g, "toy.eps", 1e-6f);
        gguf_set_val_bool(g, "toy.flag", true);
        const float arr[3] = {1.5f, 2.5f, -1.0f};
        gguf_set_arr_data(g, "toy.floats", GGUF_TYPE_FLOAT32, arr, 3);
        const char* strs[2] = {"x", "yz"};
        gguf_set_arr_str(g, "toy.strings", strs, 2);
        gguf_add_tensor(g, a);
        gguf_add_tensor(g, h);
        ASSERT_TRUE(gguf_write_to_file(g, file.c_str(), false));
        gguf_free(g);
        ggml_free(ctx);
    }
    GgufWeights w(file);
    EXPECT_EQ(w.architecture(), "toy");
    EXPECT_EQ(w.arch_key("eps"), "toy.eps");
    EXPECT_EQ(w.get_u32("toy.block_count"), 7u);
    EXPECT_EQ(w.get_int("toy.signed"), -3);
    EXPECT_THROW((void)w.get_u32("toy.signed"), std::runtime_error);  // negative does not fit
    EXPECT_NEAR(w.get_float("toy.eps"), 1e-6, 1e-12);
    EXPECT_TRUE(w.get_bool("toy.flag"));
    EXPECT_EQ(w.get_float_array("toy.floats"), (std::vector<double>{1.5, 2.5, -1.0}));
    EXPECT_EQ(w.get_string_array("toy.strings"), (std::vector<std::string>{"x", "yz"}));
    EXPECT_THROW((void)w.get_string_array("toy.floats"), std::runtime_error);
    EXPECT_EQ(w.tensor_names(), (std::vector<std::string>{"a.weight", "h.weight"}));

    const pmtest::GgufTensor a = w.tensor("a.weight");
    EXPECT_EQ(a.ne[0], 3);
    EXPECT_EQ(a.ne[1], 2);
    EXPECT_EQ(a.at(2, 1), 0.5 * 5 - 1.25);  // element (i0=2, i1=1) is flat index 5
    const pmtest::GgufTensor h = w.tensor("h.weight");
    EXPECT_EQ(w.tensor_info("h.weight").type_name, "f16");
    EXPECT_EQ(h.data, (std::vector<double>{1.0, -2.5, static_cast<double>(0.099975586f), 65504.0}));
}

// ---------------------------------------------------------------- reference forward

TEST(ReferenceForward, HparamsFromMetadata) {
    const std::string path = stories_or_empty();
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    GgufWeights w(path);
    RefLlama ref(w);
    const auto& hp = ref.hparams();
    EXPECT_EQ(hp.n_embd, 64);
    EXPECT_EQ(hp.n_layer, 5);
    EXPECT_EQ(hp.n_head, 8);
    EXPECT_EQ(hp.n_head_kv, 4);
    EXPECT_EQ(hp.head_dim, 8);
    EXPECT_EQ(hp.n_rot, 8);
    EXPECT_EQ(hp.n_ff, 172);
    EXPECT_EQ(hp.n_vocab, 512);
    EXPECT_DOUBLE_EQ(hp.rope_base, 10000.0);  // no rope.freq_base key: llama.cpp's default
    EXPECT_FALSE(hp.rope_neox);
    EXPECT_FALSE(hp.tied_output);  // stories260K has its own output.weight
    EXPECT_NEAR(hp.attn_scale, 1.0 / std::sqrt(8.0), 1e-15);
}

TEST(ReferenceForward, PromptTokenisationRoundTrips) {
    const std::string path = stories_or_empty();
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    GgufWeights w(path);
    SpmVocab vocab(w);
    const std::vector<int32_t> ids = vocab.encode("Once upon a time");
    // Whole-word pieces exist for every word of the prompt, so BPE merges reach them.
    const std::vector<int32_t> expect = {vocab.id(kSpace + "Once"), vocab.id(kSpace + "upon"), vocab.id(kSpace + "a"),
                                         vocab.id(kSpace + "time")};
    for (int32_t t : expect) ASSERT_GE(t, 0);
    EXPECT_EQ(ids, expect);
    EXPECT_EQ(vocab.decode(ids), "Once upon a time");
    EXPECT_EQ(vocab.decode(vocab.encode("She saw a big, red ball.")), "She saw a big, red ball.");
}

TEST(ReferenceForward, GreedyReproducesGoldenText) {
    const std::string path = stories_or_empty();
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    GgufWeights w(path);
    SpmVocab vocab(w);
    RefLlama ref(w);
    const int32_t bos = static_cast<int32_t>(w.get_u32("tokenizer.ggml.bos_token_id"));
    const int32_t eos = static_cast<int32_t>(w.get_u32("tokenizer.ggml.eos_token_id"));
    std::vector<int32_t> prompt = {bos};
    const std::vector<int32_t> words = vocab.encode("Once upon a time");
    prompt.insert(prompt.end(), words.begin(), words.end());

    const std::vector<int32_t> gen = ref.greedy(prompt, 80, eos);
    // Find the shortest prefix of the continuation whose decoded text covers the golden text.
    std::vector<int32_t> text_ids = words;
    size_t n_used = 0;
    std::string decoded = vocab.decode(text_ids);
    while (decoded.size() < kGolden.size() && n_used < gen.size()) {
        text_ids.push_back(gen[n_used++]);
        decoded = vocab.decode(text_ids);
    }
    EXPECT_EQ(decoded, kGolden) << "after " << n_used << " generated tokens";
    // The golden continuation is 57 generated tokens and ends on a token boundary ("high" + ".").
    // (With NeoX rope ordering instead of llama's adjacent pairs the text diverges after
    // "a little", so this check pins the rope convention.)
    EXPECT_EQ(n_used, 57u);
    ::testing::Test::RecordProperty("golden_tokens", static_cast<int>(n_used));
    std::cout << "reference greedy reproduces the golden text over " << n_used << " generated tokens\n";
}

// Structural identities of the returned states and agreement of the one-pass and incremental
// paths (they share code, so this guards the bookkeeping of hf/block indices and the KV cache).
TEST(ReferenceForward, StateLayoutAndIncrementalAgree) {
    const std::string path = stories_or_empty();
    if (path.empty()) GTEST_SKIP() << "shared model stories260K.gguf is absent";
    GgufWeights w(path);
    RefLlama ref(w);
    const auto& hp = ref.hparams();
    const std::vector<int32_t> toks = {1, 403, 407, 261, 378, 267, 300};
    const auto states = ref.forward(toks);
    ASSERT_EQ(states.size(), toks.size());
    const pmtest::GgufTensor emb = w.tensor("token_embd.weight");
    const std::vector<double> out_norm = w.tensor_data("output_norm.weight");
    const pmtest::GgufTensor out = w.tensor("output.weight");
    for (size_t p = 0; p < toks.size(); ++p) {
        const auto& s = states[p];
        ASSERT_EQ(s.hf.size(), static_cast<size_t>(hp.n_layer + 1));
        ASSERT_EQ(s.block.size(), static_cast<size_t>(hp.n_layer));
        ASSERT_EQ(s.logits.size(), static_cast<size_t>(hp.n_vocab));
        EXPECT_EQ(s.hf[0], std::vector<double>(emb.row(toks[p]), emb.row(toks[p]) + hp.n_embd));
        for (int i = 1; i < hp.n_layer; ++i) EXPECT_EQ(s.hf[static_cast<size_t>(i)], s.block[static_cast<size_t>(i - 1)]);
        EXPECT_LT(rel_err(pmtest::rms_norm(s.block.back(), out_norm, hp.rms_eps), s.hf.back()), 1e-15);
        EXPECT_GT(rel_err(s.block.back(), s.hf.back()), 1e-3);  // hf:L is not block:L-1
        for (int v = 0; v < hp.n_vocab; v += 97) {
            double dot = 0.0;
            for (int e = 0; e < hp.n_embd; ++e) dot += out.at(e, v) * s.hf.back()[static_cast<size_t>(e)];
            EXPECT_NEAR(s.logits[static_cast<size_t>(v)], dot, 1e-12);
        }
    }
    // Causality: a prefix's states do not depend on later tokens.
    const auto prefix = ref.forward(std::span<const int32_t>(toks).first(3));
    for (size_t p = 0; p < 3; ++p)
        for (int i = 0; i <= hp.n_layer; ++i)
            EXPECT_EQ(prefix[p].hf[static_cast<size_t>(i)], states[p].hf[static_cast<size_t>(i)]);
    // Attention mixes positions: the same token at another position gives other block outputs.
    const auto other = ref.forward(std::vector<int32_t>{1, 300});
    EXPECT_GT(rel_err(other[1].block[0], states[6].block[0]), 1e-3);
}

}  // namespace
