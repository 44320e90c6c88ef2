// Non-owning views of captured hidden states (METRICS.md §1): float32, row-major.
//
// Owns: nothing; a view points into states and names the caller owns, which must outlive it (and every view
// made from it by drop_front_layers / analysed). Throws: nothing.
#pragma once
#include <cstddef>
#include <span>
#include <string>

namespace phasemap::metrics {

// LIMEN's protocol (METRICS.md §1): the embedding output hf:0 is left out of the analysed layers
// when other layers are captured, unless the caller keeps it (include_embedding). The one statement
// of that rule: `analyze`, the Python package, the panel runner and `serve` all use it.
inline bool drops_embedding(std::span<const std::string> captured, bool include_embedding) {
    return !include_embedding && captured.size() > 1 && captured.front() == "hf:0";
}
// Whether hf:0 is among the analysed layers of `captured` (it is captured and not dropped).
inline bool embedding_analysed(std::span<const std::string> captured, bool include_embedding) {
    return !captured.empty() && captured.front() == "hf:0" && !drops_embedding(captured, include_embedding);
}

// `rows` vectors of `cols` elements; row i starts at data + i * stride (stride ≥ cols, in elements).
// One layer's token sequence inside a [T, L', d] tensor is a RowsView with stride L'·d; one token's
// layer sequence is a RowsView with stride d.
template <class T>
struct RowsView {
    const T* data = nullptr;
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::size_t stride = 0;

    RowsView() = default;
    RowsView(const T* d, std::size_t r, std::size_t c) : data(d), rows(r), cols(c), stride(c) {}
    RowsView(const T* d, std::size_t r, std::size_t c, std::size_t s) : data(d), rows(r), cols(c), stride(s) {}

    const T* row(std::size_t i) const { return data + i * stride; }
    std::span<const T> row_span(std::size_t i) const { return {row(i), cols}; }
};

// Captured states of one run: [T tokens, L' captured layers, d] float32 row-major, as written by
// `capture` (token-major, then layer, then hidden dimension), plus the names of the captured layers
// in capture order (e.g. "hf:1" … "hf:L", §1). `layer_names` may be empty; names are then "layer[i]".
// `token_stride` (elements between token t and t+1; 0 = layers·dim) lets a view cover a run of
// consecutive layers of a wider tensor without a copy: drop_front_layers(1) skips hf:0.
struct StatesView {
    const float* data = nullptr;
    std::size_t tokens = 0;
    std::size_t layers = 0;
    std::size_t dim = 0;
    std::span<const std::string> layer_names{};
    std::size_t token_stride = 0;

    std::size_t stride() const { return token_stride ? token_stride : layers * dim; }
    const float* at(std::size_t t, std::size_t l) const { return data + t * stride() + l * dim; }
    // The token sequence h_0 … h_{T−1} of captured layer l (token axis, §2).
    RowsView<float> layer(std::size_t l) const { return {data + l * dim, tokens, dim, stride()}; }
    // The layer sequence h_0 … h_{L'−1} of token t (layer axis, §3).
    RowsView<float> token(std::size_t t) const { return {at(t, 0), layers, dim, dim}; }
    // Name of captured layer l ("layer[l]" when no names were given).
    std::string layer_name(std::size_t l) const {
        return l < layer_names.size() ? layer_names[l] : "layer[" + std::to_string(l) + "]";
    }
    // The analysed layers of these captured states (drops_embedding on layer_names): without hf:0
    // (drop_front_layers(1)) or this view as it is. No copy.
    StatesView analysed(bool include_embedding) const {
        return drops_embedding(layer_names, include_embedding) ? drop_front_layers(1) : *this;
    }
    // The same states without their first n layers (and names), sharing the data: no copy.
    // n ≤ layers.
    StatesView drop_front_layers(std::size_t n) const {
        StatesView v = *this;
        v.token_stride = stride();
        v.data = data ? data + n * dim : nullptr;
        v.layers = layers - n;
        v.layer_names = layer_names.size() >= n ? layer_names.subspan(n) : std::span<const std::string>{};
        return v;
    }
};

}  // namespace phasemap::metrics
