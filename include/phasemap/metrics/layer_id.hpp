// One captured layer, named the same way in every module (METRICS.md §1): the layer type that
// run files, the results DB, the metric views, the report and every verb share.
//
// It lives in metrics because every module that names a layer (capture, store, steer, panel,
// audit, report) may use metrics (docs/DESIGN.md), and it is pure: text in, values out. The
// graph-tensor names a layer resolves to stay private to capture (src/capture/layers.cpp).
//
// Labels (canonical form, as written to run files and the DB):
//   hf:N            Hugging Face output_hidden_states index: hf:0 = embedding output,
//                   hf:i (1 ≤ i < L) = output of block i−1, hf:L = after the final norm
//   block:i         raw output of block i (0 ≤ i < L); block:i is the same state as hf:i+1 for
//                   i < L−1, while block:L−1 is the last block's output *before* the final norm
//   resid_mid:i     residual stream after attention, before the MLP, in block i
//   attn_out:i      attention output added to the residual in block i
//   ffn_out:i       MLP / MoE output added to the residual in block i
//   tensor:NAME-i   any graph tensor NAME-i of block i
//
// An integer means the same thing everywhere: a bare integer N ≥ 0 is hf:N (in --layers, in
// --metric-layer, in a manifest's [metrics] layer, in control-audit and the monitor). A negative
// integer −k picks the k-th captured layer from the end of the captured list (−1 = the last one
// captured, which is hf:L when hf:all or hf:last is captured); inside the --layers grammar,
// hf:−k likewise counts from the end of hf:0 … hf:L.
//
// Depth: a position on the residual stream in blocks applied, so that figures over depth and the
// DB's token_layers.depth order every kind of layer on one axis:
//   hf:N → N (N < L);  hf:L → L + 0.5 (the final norm follows the last block);  block:i → i + 1;
//   attn_out:i → i + 0.25;  resid_mid:i → i + 0.5;  ffn_out:i → i + 0.75;  tensor:NAME-i → i + 0.5.
// hf:L needs the model's block count L to be told from hf:N.
//
// Owns: nothing; LayerId is a plain value. Throws: as stated per function (the text named).
#pragma once
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace phasemap::metrics {

enum class LayerKind { hf, block, resid_mid, attn_out, ffn_out, tensor };

// "hf", "block", "resid_mid", "attn_out", "ffn_out", "tensor".
std::string_view to_string(LayerKind k);

struct LayerId {
    LayerKind kind = LayerKind::hf;
    int index = 0;            // hf: 0 … L; every other kind: the block, 0 … L−1
    std::string tensor;       // tensor kind only: the graph tensor name without "-i"

    // One label: KIND:N (N ≥ 0), tensor:NAME-N, or a bare integer N ≥ 0 (= hf:N). Whitespace
    // around it is ignored. Throws std::invalid_argument naming the text; try_parse returns
    // nullopt instead. Ranges, "all", "last" and negative indices are the layer-spec grammar's
    // (capture's resolve_layers), not a single LayerId.
    static LayerId parse(std::string_view text);
    static std::optional<LayerId> try_parse(std::string_view text) noexcept;

    std::string label() const;                 // canonical: "hf:3", "attn_out:1", "tensor:attn_norm-2"
    bool component() const { return kind != LayerKind::hf && kind != LayerKind::block; }
    // Depth on the residual stream (see above) for a model with n_layer blocks.
    double depth(int n_layer) const;

    friend bool operator==(const LayerId&, const LayerId&) = default;
};

// The one resolution of a user's layer choice (--metric-layer, a manifest's [metrics] layer)
// against the labels of the captured layers: the position in `captured` of the layer chosen by
// the integer rule above (parse_layer_choice, then resolve_layer_index of metrics/analyze.hpp).
// Throws MetricError naming the choice and the captured labels.
std::size_t resolve_layer_choice(std::string_view choice, std::span<const std::string> captured);

}  // namespace phasemap::metrics
